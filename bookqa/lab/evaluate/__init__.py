"""Batch evaluation (``bookqa eval``): dataset loaders, gold evidence, metrics, the configurations that
are compared, the run loop and the report. See docs/eval/ for the commands and measured numbers."""
from .configs import ALL_CONFIGS, DEFAULT_CONFIGS
from .registry import build_configs, parse_config_names
from .datasets import DATASETS, EvalData, load_dataset
from .gold import Gold, gold_chunks, silver_evidence
from .runner import Runner, read_rows, select

__all__ = ["ALL_CONFIGS", "DATASETS", "DEFAULT_CONFIGS", "EvalData", "Gold", "Runner", "build_configs",
           "gold_chunks", "load_dataset", "parse_config_names", "read_rows", "select", "silver_evidence"]

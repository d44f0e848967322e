"""QRRankerConfig: the one identity of a configured QR ranker (cache key, stored form, resolution)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from bookqa.errors import ConfigError
from bookqa.rerank.config import QRRankerConfig
from bookqa.settings import Settings


def test_stored_form_is_the_constructor_arguments():
    config = QRRankerConfig(model="some/model", aggregate="max", calibrate=True, permutations=2, refine=0)
    stored = json.loads(json.dumps(config.to_json()))
    assert QRRankerConfig.from_json(stored) == config and QRRankerConfig(**stored) == config
    assert hash(QRRankerConfig.from_json(stored)) == hash(config) and len(config.key()) == 12
    with pytest.raises(ConfigError, match="unknown QR ranker setting"):
        QRRankerConfig.from_json({**stored, "colour": "blue"})


def test_every_reranking_setting_is_part_of_the_identity():
    """Each option that changes a ranking changes the configuration (so a ranker cached for one is never
    handed out for another, e.g. aggregate=max after sum)."""
    base = Settings()
    changed = {"reranker_model": "other", "reranker_heads": "heads.json", "reranker_adapter": "none",
               "device": "cpu", "dtype": "float32", "rerank_question_span": "query", "rerank_aggregate": "max",
               "rerank_calibrate": True, "rerank_debias": "position", "rerank_permutations": 2, "rerank_refine": 0}
    configs = {QRRankerConfig.from_settings(base)}
    for name, value in changed.items():
        configs.add(QRRankerConfig.from_settings(dataclasses.replace(base, **{name: value})))
    assert len(configs) == len(changed) + 1
    assert len(changed) == len(dataclasses.fields(QRRankerConfig))


def test_invalid_options_are_refused_by_the_settings_too():
    with pytest.raises(ConfigError, match="aggregate"):
        Settings.from_env({"BOOKQA_RERANK_AGGREGATE": "mean"})
    with pytest.raises(ConfigError, match="rerank_refine"):
        Settings.from_env({"BOOKQA_RERANK_REFINE": "1"})


def test_the_process_cache_is_keyed_by_the_whole_configuration(monkeypatch):
    import bookqa.pipeline as pipeline
    import bookqa.rerank as rerank
    import bookqa.rerank.shared as shared

    made = []

    class Recording:
        def __init__(self, settings=None, config=None, progress=None):
            made.append(config)

    monkeypatch.setattr(rerank, "QRRanker", Recording)
    monkeypatch.setattr(shared, "_rerankers", {})
    settings = Settings()
    first = pipeline.get_reranker(settings)
    assert pipeline.get_reranker(settings) is first
    other = pipeline.get_reranker(settings.replace(rerank_aggregate="max"))
    assert other is not first and made[-1].aggregate == "max"
    assert pipeline.get_reranker(settings.replace(rerank_question_span="query")) is not first
    assert len(made) == 3

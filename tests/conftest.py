"""Test-wide setup: never reach the hub; each test gets a throw-away BOOKQA_HOME, while the (slow to
build) model cache is shared across tests and runs."""
from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Model weights are assembled/converted once per machine into this cache (CI builds it on first use).
MODEL_CACHE = Path(os.environ.get("BOOKQA_MODEL_CACHE") or Path.home() / ".cache" / "bookqa" / "models")
os.environ["BOOKQA_MODEL_CACHE"] = str(MODEL_CACHE)

import pytest  # noqa: E402

from bookqa.settings import Settings  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings with a fresh home under tmp_path and the shared model cache."""
    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path / "home"))
    return Settings.from_env()


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The embedded reranker's tokenizer (tokenizers.Tokenizer); reads only the GGUF's vocabulary."""
    from bookqa.weights import fast_tokenizer

    return fast_tokenizer("qwen2.5-coder-0.5b", Settings.from_env())


@pytest.fixture
def one_thread():
    """Tiny models run ~10x faster on one torch thread than on two busy ones (training tests use it)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

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


# --- browser tests that could not run say so on the run's last line ----------------------------------
_browser_skips: dict[str, int] = {}  # skip reason -> tests


def pytest_runtest_logreport(report):
    if report.skipped and report.when == "setup" and "browser" in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        _browser_skips[reason] = _browser_skips.get(reason, 0) + 1


def pytest_unconfigure(config):
    # after pytest's own summary line, so a run that looks green cannot hide an untested web UI
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for reason, count in _browser_skips.items():
        line = f"THE BROWSER TESTS DID NOT RUN ({count} skipped): {reason}"
        if reporter is not None:
            reporter.write_line(line, yellow=True, bold=True)
        else:
            print(line)

"""The README documents every setting (the table is generated from bookqa/settings.py)."""
from pathlib import Path

from bookqa.settings import describe

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_a_meaning():
    for var, _default, note in describe():
        assert note, f"{var} has no comment in bookqa/settings.py"
        assert f"`{var}`" in README, f"{var} is missing from the README settings table (python -m bookqa.settings)"


def test_readme_names_the_two_setup_commands():
    assert "make run" in README and "make test" in README


def test_every_research_bench_setting_is_documented_with_a_meaning():
    from bookqa.lab.settings import EvalSettings, TrainSettings

    for cls in (EvalSettings, TrainSettings):
        for var, _default, note in describe(cls):
            assert note, f"{var} has no comment in bookqa/lab/settings.py"
            assert f"`{var}`" in README, f"{var} is missing from the README (python -m bookqa.lab.settings)"


def test_the_python_api_example_runs_on_tiny_models(tmp_path, monkeypatch):
    """The README's Python example, run as written (tiny random reranker, a scripted generator)."""
    import os
    import re

    import bookqa.generate
    import bookqa.pipeline
    from bookqa.rerank import QRRanker
    from bookqa.settings import Settings
    from test_rerank_tiny import tiny_model, tiny_tokenizer

    example = re.search(r"### Python API\n\n```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BOOKQA_SUMMARIES", "none")
    monkeypatch.setenv("BOOKQA_TOP_K", "3")  # the tiny model reads a few thousand positions
    monkeypatch.setenv("BOOKQA_CITATION_CHECK", "embedder")  # the scripted generator cannot judge
    ranker = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=[(0, 1), (1, 2)], settings=Settings())

    class Scripted:  # answers from the first passage it is given, citing it
        model_id = "scripted"

        def stream(self, messages, max_tokens, temperature=0.0):
            yield "Holmes pretended to be dying of a tropical disease [1]."

    monkeypatch.setattr(bookqa.pipeline, "get_reranker", lambda settings, progress=None: ranker)
    monkeypatch.setattr(bookqa.generate, "get_generator", lambda settings, progress=None: Scripted())
    printed: list[str] = []
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    exec(compile(example, "README.md", "exec"), {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed[0] == "Holmes pretended to be dying of a tropical disease [1]."
    assert re.match(r"\[1\] chunk \d+, characters \d+-\d+: ", printed[1])
    assert os.path.isdir(tmp_path / "home" / "books")

from pathlib import Path

import pytest

from bookqa.errors import ConfigError
from bookqa.settings import Settings


def test_defaults_env_and_overrides(tmp_path):
    env = {"BOOKQA_HOME": str(tmp_path), "BOOKQA_CHUNK_TOKENS": "150", "BOOKQA_MAX_UPLOAD_MB": "2.5",
           "BOOKQA_GENERATOR": "remote"}
    s = Settings.from_env(env)
    assert s.home == tmp_path and s.chunk_tokens == 150 and s.max_upload_mb == 2.5
    assert s.generator == "remote" and s.top_k == 50
    assert s.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert s.books_dir == tmp_path / "books" and s.models_dir == tmp_path / "models"
    s2 = Settings.from_env(env, chunk_tokens=300, top_k=None)
    assert s2.chunk_tokens == 300 and s2.top_k == 50
    assert s2.replace(top_n=5, generator=None).top_n == 5
    assert Settings.from_env({"BOOKQA_MODEL_CACHE": str(tmp_path / "m")}).models_dir == tmp_path / "m"


@pytest.mark.parametrize("env,match", [
    ({"BOOKQA_CHUNK_TOKENS": "many"}, "not a valid int"),
    ({"BOOKQA_CHUNK_TOKENS": "3"}, "at least 16"),
    ({"BOOKQA_GENERATOR": "cloud"}, "generator"),
    ({"BOOKQA_SUMMARIES": "all"}, "summaries"),
    ({"BOOKQA_DEVICE": "tpu"}, "device"),
])
def test_invalid_values_are_clear_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.from_env({}, colour="blue")


def test_as_dict_is_json_ready(tmp_path):
    import json

    d = Settings.from_env({"BOOKQA_HOME": str(tmp_path)}).as_dict()
    assert json.loads(json.dumps(d))["home"] == str(tmp_path)
    assert isinstance(Path(d["home"]), Path)

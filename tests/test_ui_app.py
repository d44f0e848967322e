"""`bookqa ui` argument handling and the Gradio app's wiring and error paths, without a browser or models.

The event handlers are called the way Gradio calls them (``demo.fns[i].fn``); the paths tested here
fail before any model is loaded, so they take milliseconds once Gradio is imported.
"""
from __future__ import annotations

import pytest

from bookqa.cli import main
from bookqa.cli.ui import is_loopback, parse_auth
from bookqa.errors import ConfigError
from bookqa.settings import Settings


def test_loopback_detection():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        assert not is_loopback(host), host


def test_auth_parsing():
    assert parse_auth("ann:se:cret", "--auth") == ("ann", "se:cret")
    assert parse_auth(None, "--auth") is None and parse_auth("", "X") is None
    for bad in ("nocolon", ":pw", "user:"):
        with pytest.raises(ConfigError, match="user:password"):
            parse_auth(bad, "--auth")


def test_non_loopback_host_needs_allow_remote(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path))
    assert main(["ui", "--host", "0.0.0.0", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err and "--allow-remote" in err


def test_bad_auth_variable_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path))
    monkeypatch.setenv("BOOKQA_UI_AUTH", "no-password-here")
    assert main(["ui", "--port", "7999"]) == 2
    assert "BOOKQA_UI_AUTH must look like user:password" in capsys.readouterr().err


def test_ui_settings_from_env(monkeypatch):
    monkeypatch.setenv("BOOKQA_UI_PORT", "8123")
    monkeypatch.setenv("BOOKQA_UI_HOST", "127.0.0.1")
    s = Settings.from_env()
    assert (s.ui_host, s.ui_port, s.ui_auth_env) == ("127.0.0.1", 8123, "BOOKQA_UI_AUTH")
    with pytest.raises(ConfigError):
        s.replace(ui_port=70000)
    # the password itself is never a setting (settings are recorded in every book's manifest)
    assert not any(k == "ui_auth" or "password" in k for k in s.as_dict())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("gradio")
    from ui.app import build_app

    home = tmp_path_factory.mktemp("home")
    settings = Settings.from_env(home=home, max_upload_mb=0.001, ui_ask_concurrency=3)
    demo = build_app(settings)
    return demo, {f.name: f for f in reversed(list(demo.fns.values()))}, settings


def test_ingest_and_ask_run_in_separate_concurrency_groups(app):
    _, fns, settings = app
    ingest, ask = fns["on_ingest"], fns["on_ask"]
    assert ingest.concurrency_id == "ingest" and ingest.concurrency_limit == 1
    assert ask.concurrency_id == "ask" and ask.concurrency_limit == settings.ui_ask_concurrency == 3
    assert fns["on_cite"].concurrency_id == "view"  # citation clicks never wait behind a question


SETTINGS_ARGS = ("local", "http://127.0.0.1:8000/v1", "qwen2.5-coder-0.5b", 8, 2)


def _last(gen):
    out = None
    for out in gen:
        pass
    return out


def test_ingest_errors_become_messages(app, tmp_path):
    _, fns, _ = app
    ingest = fns["on_ingest"].fn
    first = _last(ingest(None, "", "auto", *SETTINGS_ARGS, "extractive"))
    assert "Choose a .txt" in first[0] and "bq-error" in first[0]

    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)  # 5 KB > 0.001 MB
    out = _last(ingest(str(big), "", "auto", *SETTINGS_ARGS, "extractive"))
    assert "big.txt is 4.9 KB; the upload limit is 1.0 KB (BOOKQA_MAX_UPLOAD_MB=0.001)" in out[0]

    empty = tmp_path / "sub" / "empty.txt"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    out = _last(ingest(str(empty), "", "auto", *SETTINGS_ARGS, "extractive"))
    assert "Could not ingest empty.txt" in out[0] and "empty" in out[0]
    assert str(empty.parent) not in out[0]  # the server's upload path is not shown

    bad_kind = _last(ingest(str(big), "", "poetry", *SETTINGS_ARGS, "extractive"))
    assert "bq-error" in bad_kind[0]


def test_bad_settings_and_missing_books_become_messages(app):
    _, fns, _ = app
    ask = fns["on_ask"].fn
    out = _last(ask(None, "Who?", *SETTINGS_ARGS, True, True))
    assert "Choose a book first" in out[0]
    out = _last(ask("no-such-book", "Who?", *SETTINGS_ARGS, True, True))
    assert "bq-error" in out[0] and "library is empty" in out[0]
    out = _last(ask("x", "Who?", "local", "", "", 0, -1, True, True))  # top_n -1 is refused by Settings
    assert "top_n must be at least 1" in out[0]
    status = fns["on_delete"].fn("no-such-book", None, None)
    assert "Could not delete" in status[0]
    assert "Ask a question first" in fns["on_cite"].fn(None, None)

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
    out = _last(ask("x", "Who?", *SETTINGS_ARGS, True, True, "essay"))  # the answer style radio, checked too
    assert "answer_style must be prose or short" in out[0]
    status = fns["on_delete"].fn("no-such-book", None, None)
    assert "Could not delete" in status[0]
    assert "Ask a question first" in fns["on_cite"].fn(None, None)


# --- a busy port is found first ------------------------------------------------------------------------
@pytest.fixture
def busy_port():
    """A port another program holds: a real socket listening on 127.0.0.1."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def test_busy_port_fails_at_once_naming_the_flag_and_the_variable(busy_port, tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = dict(os.environ, BOOKQA_HOME=str(tmp_path / "home"))
    env.pop("BOOKQA_UI_AUTH", None)
    root = Path(__file__).resolve().parent.parent
    for argv, extra in ((["ui", "--port", str(busy_port), "--sample"], {}),  # --sample would ingest first
                        (["demo", "--ui", "--port", str(busy_port)], {}),  # `make run`: ingest, answer, serve
                        (["demo", "--ui"], {"BOOKQA_UI_PORT": str(busy_port)})):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bookqa", *argv], cwd=root, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)
        seconds = time.perf_counter() - t0
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines == [f"bookqa: error: port {busy_port} on 127.0.0.1 is already in use (another bookqa ui?); "
                         "choose another with --port N or BOOKQA_UI_PORT=N"], (argv, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        assert not (tmp_path / "home" / "books").exists(), argv  # nothing was ingested, no model loaded
        assert seconds < 15, (argv, seconds)  # the interpreter and argument parsing, not a model


def test_a_port_taken_after_the_check_is_still_one_line(app, busy_port):
    from bookqa.errors import ConfigError
    from ui.app import launch

    _, _, settings = app
    with pytest.raises(ConfigError, match=f"port {busy_port} on 127.0.0.1 is already in use.*--port N or "
                                          "BOOKQA_UI_PORT=N"):
        launch(settings, port=busy_port, block=False, quiet=True)


def test_upload_cap_of_the_page_is_the_apps_limit(app):
    demo, _, settings = app
    upload = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "upload")
    assert upload.label.endswith("up to 1.0 KB)")  # BOOKQA_MAX_UPLOAD_MB=0.001 in this fixture


# --- Ask is locked while a question runs; Delete asks first ----------------------------------------------
def test_ask_button_is_locked_for_the_question_and_unlocked_after(app):
    demo, fns, _ = app
    ask, lock, unlock = fns["on_ask"], fns["lock_ask"], fns["unlock_ask"]
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "ask-button")
    box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "question")
    # the question box is locked too, so Enter cannot queue a second question behind the first
    assert [o._id for o in lock.outputs] == [button._id, box._id] == [o._id for o in unlock.outputs]
    assert {t[1] for t in lock.targets} == {"click", "submit"} and not lock.queue  # at once, not queued
    # the answer runs after the lock and the unlock after the answer, whether it succeeded or not
    assert demo.fns[ask.trigger_after] is lock and not ask.trigger_only_on_success
    assert demo.fns[unlock.trigger_after] is ask and not unlock.trigger_only_on_success
    # a queued question shows Gradio's queue status (position, wait) on the answer pane
    assert ask.show_progress == "full" and [o.elem_id for o in ask.show_progress_on] == ["answer"]
    assert all(c.interactive is False for c in lock.fn()) and all(c.interactive is True for c in unlock.fn())


def test_delete_asks_first_and_deletes_the_book_it_asked_about(app, tmp_path):
    from bookqa.library import Library
    from bookqa.stages import ChunkStage

    _, fns, settings = app
    story = tmp_path / "gull.txt"
    story.write_text("Marta kept the light on Gull Rock. Her cat was called Pepper.\n", encoding="utf-8")
    book = Library(settings).ingest(story, title="Gull Rock", stages=[ChunkStage()]).book
    try:
        status, row, question, pending = fns["on_delete_request"].fn(book.id)
        assert row.visible is True and pending == book.id and status == ""
        assert "Gull Rock" in question and book.id in question and "cannot be undone" in question
        assert book.dir.is_dir()  # asking deletes nothing
        cancelled = fns["on_delete_cancel"].fn()
        assert "Nothing was deleted" in cancelled[0] and cancelled[1].visible is False and cancelled[3] is None
        assert book.dir.is_dir()
        out = fns["on_delete"].fn(pending, None, None)
        assert "Deleted “Gull Rock”" in out[0] and not book.dir.exists()
        assert out[-3].visible is False and out[-1] is None  # the question went with the book
        assert "Choose a book to delete" in fns["on_delete_request"].fn(None)[0]
    finally:
        if book.dir.exists():
            Library(settings).remove(book.id)


def test_pages_pick_up_a_library_changed_elsewhere(app, tmp_path):
    """Each page polls a cheap stamp of the library; its lists change only when the library did."""
    from bookqa.library import Library
    from bookqa.stages import ChunkStage
    from ui.app import library_stamp

    _, fns, settings = app
    tick = fns["on_tick"].fn
    library = Library(settings)
    seen = library_stamp(library)
    assert tick(seen, None, None, None) == (gr_skip(),) * 5  # unchanged: the page is left alone
    story = tmp_path / "gull.txt"
    story.write_text("Marta kept the light on Gull Rock. Her cat was called Pepper.\n", encoding="utf-8")
    book = library.ingest(story, title="Gull Rock", stages=[ChunkStage()]).book  # as `bookqa ingest` would
    try:
        stamp, table, ask_list, _, delete_list = tick(seen, None, None, None)
        assert stamp != seen and book.id in table
        assert (f"Gull Rock ({book.id})", book.id) in ask_list.choices and ask_list.value == book.id
        assert tick(stamp, book.id, None, None) == (gr_skip(),) * 5
        library.remove(book.id)  # deleted in another page
        stamp2, table, ask_list, _, _ = tick(stamp, book.id, None, book.id)
        assert stamp2 != stamp and book.id not in table and ask_list.choices == [] and ask_list.value is None
    finally:
        if book.dir.exists():
            library.remove(book.id)


def gr_skip():
    import gradio as gr

    return gr.skip()


def test_a_damaged_book_is_listed_deletable_and_explained_while_others_work(app, tmp_path):
    """A truncated chunks file marks only that book damaged: the table says why and how to repair it, the
    Delete list offers it (with the confirmation), asking about it says the same, the other book stays."""
    from bookqa.library import Library
    from bookqa.stages import ChunkStage

    _, fns, settings = app
    library = Library(settings)
    made = []
    try:
        for name, text in (("gull", "Marta kept the light on Gull Rock. Her cat was called Pepper.\n"),
                           ("fern", "Old Tom kept bees by the fern hollow. He sold honey at the fair.\n")):
            path = tmp_path / f"{name}.txt"
            path.write_text(text, encoding="utf-8")
            made.append(library.ingest(path, title=name.title(), stages=[ChunkStage()]).book)
        gull, fern = made
        chunks = gull.dir / "chunks.jsonl"
        chunks.write_bytes(chunks.read_bytes()[:10])
        table, ask_list, _, delete_list = fns["on_refresh"].fn(None, None, None)
        assert "bq-damaged" in table and gull.id in table and "truncated" in table
        assert "add the same file again to repair it" in table and "bookqa ingest" in table
        assert [c[1] for c in ask_list.choices] == [fern.id]  # only the usable book can be asked about
        assert {c[1] for c in delete_list.choices} == {gull.id, fern.id}
        answer, reader, result = _last(fns["on_ask"].fn(gull.id, "Who kept the light?", *SETTINGS_ARGS, True, True))
        assert "is damaged" in answer and "add the same file again" in answer and result is None
        status, row, question, pending = fns["on_delete_request"].fn(gull.id)
        assert row.visible is True and pending == gull.id and "Gull" in question
        out = fns["on_delete"].fn(pending, None, None)
        assert "Deleted" in out[0] and not gull.dir.exists() and fern.dir.is_dir()
    finally:
        for b in made:
            if b.dir.exists():
                library.remove(b.id)


def test_an_unreadable_library_is_one_message_not_an_error_badge(app, monkeypatch):
    from bookqa.errors import StorageError
    from bookqa.library import Library

    _, fns, _ = app

    def unreadable(self):
        raise StorageError("cannot read the library at /x/books (Permission denied)")

    monkeypatch.setattr(Library, "_dirs", unreadable)
    table, ask_list, sum_list, delete_list = fns["on_load"].fn()
    assert "cannot read the library" in table and ask_list.choices == [] == delete_list.choices

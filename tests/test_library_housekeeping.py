"""Housekeeping that real processes need: one ingest of a book at a time (a second waits, then finds the
work done), an unwritable home reported in one line, and the temporaries of killed model builds swept."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bookqa.errors import StorageError
from bookqa.library import Library
from bookqa.stages import ChunkStage

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
NOVEL, PLAY = FIXTURES / "gutenberg_mini.txt", FIXTURES / "hamlet_act1.txt"

# One ingest process: the real Library.ingest with the chunk stage, which says when it starts and then waits
# for the test's go-ahead, so the test can start a second ingest while the first one holds the book.
GATED_INGEST = r"""
import sys, time
from pathlib import Path
from bookqa.library import Library
from bookqa.settings import Settings
from bookqa.stages import ChunkStage

home, source, signals = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

class GatedChunks(ChunkStage):
    def run(self, book, settings, progress):
        with open(signals / "runs", "a") as fh:
            fh.write("run\n")
        (signals / "running").touch()
        while not (signals / "go").exists():
            time.sleep(0.05)
        return super().run(book, settings, progress)

report = Library(Settings.from_env(home=home)).ingest(
    source, stages=[GatedChunks()], notify=lambda message: print("NOTICE", message, flush=True))
print("RESULT", report.created, ",".join(report.stages_run), ",".join(report.stages_skipped), flush=True)
"""


def _wait_for(predicate, what: str, timeout_s: float = 90, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a process exited while waiting for {what}: {proc.args}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_ingest_of_a_book_waits_for_the_first_and_reuses_its_work(settings, tmp_path):
    signals = tmp_path / "signals"
    signals.mkdir()
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", GATED_INGEST, str(settings.home), str(NOVEL), str(signals)],
                                cwd=ROOT, stdout=open(logs[name], "w"), stderr=subprocess.STDOUT)

    first = start("first")
    second = None
    try:
        _wait_for(lambda: (signals / "running").exists(), "the first ingest to start its stage", procs=[first])
        second = start("second")
        _wait_for(lambda: "NOTICE" in logs["second"].read_text(), "the second ingest to wait", procs=[second])
        assert "another ingest of this book is running" in logs["second"].read_text()

        library = Library(settings)  # this process too: asked not to wait, it says the book is busy
        with pytest.raises(StorageError, match="being ingested by another process"):
            library.ingest(NOVEL, stages=[ChunkStage()], wait=False)
        with pytest.raises(StorageError, match="being ingested by another process"):
            library.remove("lighthouse")

        (signals / "go").touch()
        assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "RESULT True chunks " in logs["first"].read_text()
    assert "RESULT False  chunks" in logs["second"].read_text()  # nothing run, the chunks up to date
    assert (signals / "runs").read_text() == "run\n"  # the stage ran once
    assert [b.title for b in Library(settings).books()] == ["The Lighthouse Keeper's Ledger"]


# --- an unwritable home ------------------------------------------------------------------------------

DROP_CAPS = ["--inh-caps=-dac_override,-dac_read_search,-fowner",
             "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _unprivileged(tmp_path: Path) -> list[str]:
    """The command prefix that runs a process which file modes bind: nothing for a normal user; for root,
    setpriv without the capabilities that override them (skips when that cannot be done here)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed: cannot drop the DAC capabilities")
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    try:
        done = subprocess.run([setpriv, *DROP_CAPS, "--", "sh", "-c", f"touch {probe}/x"], capture_output=True)
    finally:
        probe.chmod(0o755)
    if done.returncode == 0 or "Permission denied" not in done.stderr.decode(errors="replace"):
        pytest.skip(f"setpriv could not drop the DAC capabilities here: {done.stderr.decode(errors='replace')[:200]}")
    return [setpriv, *DROP_CAPS, "--"]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _set_tree_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~bits))


def test_an_unwritable_home_is_one_line_and_exit_2(settings, tmp_path):
    prefix = _unprivileged(tmp_path)
    book = Library(settings).ingest(NOVEL, stages=[ChunkStage()]).book
    home = Path(settings.home)
    before = _hashes(home)
    env = {**os.environ, "BOOKQA_HOME": str(home)}

    def bookqa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "bookqa", "-q", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    _set_tree_writable(home, False)
    try:
        for args, action in [(("ingest", str(PLAY)), "add a book to"), (("rm", book.id), "remove a book from")]:
            done = bookqa(*args)
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr + done.stdout
            assert done.stderr.startswith(f"bookqa: error: cannot {action} the library: Permission denied")
            assert done.stderr.count("\n") == 1 and "BOOKQA_HOME" in done.stderr
        listed = bookqa("books")  # reading still works
        assert listed.returncode == 0 and book.id in listed.stdout
    finally:
        _set_tree_writable(home, True)
    assert _hashes(home) == before


# --- temporaries of killed model builds ----------------------------------------------------------------

HOLD_LOCK = r"""
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_temporaries_of_killed_builds_are_swept_unless_a_live_build_holds_them(tmp_path):
    from bookqa.weights import sweep_stale_temporaries

    models = tmp_path / "models"
    (models / "tiny-f32").mkdir(parents=True)
    (models / "tiny-f32" / "config.json").write_text("{}")
    stale_dir = models / ".tiny-f32.k3j9x_2a"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"\0" * 1024)
    stale_file = models / ".tiny.gguf.ab12cd34.tmp"
    stale_file.write_bytes(b"GGUF" + b"\0" * 1024)
    live_dir = models / ".busy-tokenizer.zz99yy88"
    live_dir.mkdir()
    unrelated = [models / ".cache", models / ".tiny-f32.lock", models / "notes.txt"]
    unrelated[0].mkdir()
    unrelated[1].write_text("")
    unrelated[2].write_text("mine")

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(models / ".busy-tokenizer.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = sweep_stale_temporaries(models)
        assert sorted(removed) == sorted([stale_dir, stale_file])
        assert live_dir.exists() and (models / "tiny-f32" / "config.json").exists()
        assert all(p.exists() for p in unrelated)
    finally:
        holder.kill()
        holder.wait()
    assert sweep_stale_temporaries(models) == [live_dir]  # its build died with its process


def test_the_first_use_of_a_models_directory_sweeps_it_and_a_failed_conversion_leaves_nothing(tmp_path):
    from bookqa import weights
    from bookqa.settings import Settings

    models = tmp_path / "models"
    models.mkdir()
    stale = models / ".broken-f32.a1b2c3d4"
    stale.mkdir()
    fake = tmp_path / "broken.gguf"
    fake.write_bytes(b"not a gguf file at all")
    settings = Settings.from_env(home=tmp_path / "home", model_cache=str(models))
    assert weights.gguf_file(str(fake), settings) == fake
    assert not stale.exists()

    out = models / "broken-f32"
    with pytest.raises(Exception):
        weights._convert_gguf(fake, out, weights.no_progress)
    assert not out.exists()
    assert [p.name for p in models.iterdir() if p.name.startswith(".broken-f32.") and not p.name.endswith(".lock")] == []

"""``--ray`` on a real local Ray cluster (``ray start --head`` with 2 CPUs, as a user starts one): a 3-book
evaluation writes the rows and report of a local run, a worker killed mid-book loses no finished
question, a folder ingested by workers gives the books of local ingests, and a run without ``--ray``
never imports Ray. Tiny random models and the BM25 first stage (dense weight 0) keep it small."""
from __future__ import annotations

import collections
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bookqa.cli import main
from bookqa.lab.baselines.pointwise import PointwiseReranker
from bookqa.lab.evaluate.corpus import eval_settings
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.registry import build_configs
from bookqa.lab.evaluate.runner import Runner, read_rows, select
from bookqa.rerank import QRRanker

from conftest import FIXTURES
from helpers import free_port
from test_rerank_tiny import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.ray

THREE_BOOKS = FIXTURES / "eval" / "locomo" / "locomo_three.json"
INGEST_BOOKS = ("gutenberg_mini.txt", "hamlet_act1.txt", "chinese.txt")
TESTS = Path(__file__).parent
# What differs between two runs of the same work: wall times, when a row or report was written, the command.
VOLATILE = {"seconds", "timings", "updated", "generated", "started", "command", "latency"}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head node with 2 CPUs, started as `ray start --head --block` (its address is what --ray takes);
    stopping that process stops the processes it started. The cluster takes a token of its own, which this
    process (the jobs' driver) sends: Ray turns token authentication on by itself when a token file from
    an earlier local cluster exists, and a driver without the token would be refused."""
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    log = open(temp / "head.log", "wb")
    auth = pytest.MonkeyPatch()
    auth.setenv("RAY_AUTH_MODE", "token")
    auth.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    auth.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    # the workers import this module (the tiny configurations are built there)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "2",
                             "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp),
                             "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in (temp / "head.log").read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray start failed: " + (temp / "head.log").read_text(errors="replace")[-2000:])
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        auth.undo()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """Local `bookqa ingest` of each book and a local `bookqa eval` of the three conversations, in a fresh
    interpreter that then says whether Ray was imported."""
    root = tmp_path_factory.mktemp("local")
    folder = root / "books"
    folder.mkdir()
    for name in INGEST_BOOKS:
        (folder / name).write_bytes((FIXTURES / "ingest" / name).read_bytes())
    script = textwrap.dedent(f"""
        import json, sys
        from bookqa.cli import main
        codes = [main(["-q", "--home", {str(root / "home")!r}, "ingest", path]) for path in {[str(folder / n) for n in INGEST_BOOKS]!r}]
        codes.append(main(["-q", "--home", {str(root / "home")!r}, "eval", "locomo", "--data", {str(THREE_BOOKS)!r},
                           "--configs", "bm25,hybrid", "--k", "5", "--no-answers", "--out", {str(root / "out")!r}]))
        print(json.dumps({{"codes": codes, "ray_imported": "ray" in sys.modules}}))
    """)
    env = {**os.environ, "BOOKQA_DENSE_WEIGHT": "0", "BOOKQA_CHUNK_TOKENS": "32"}  # the tests on the cluster set these too
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"folder": folder, "home": root / "home", "out": root / "out", **result}


def test_a_run_without_ray_never_imports_ray(local_reference):
    assert local_reference["codes"] == [0, 0, 0, 0]  # three ingests, one evaluation
    assert local_reference["ray_imported"] is False


def test_eval_on_ray_writes_the_rows_and_report_of_a_local_run(ray_cluster, local_reference, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOKQA_DENSE_WEIGHT", "0")
    monkeypatch.setenv("BOOKQA_CHUNK_TOKENS", "32")
    out = tmp_path / "out"
    argv = ["-q", "--home", str(tmp_path / "home"), "eval", "locomo", "--data", str(THREE_BOOKS), "--configs",
            "bm25,hybrid", "--k", "5", "--no-answers", "--out", str(out), "--ray", ray_cluster, "--ray-workers", "2"]
    assert main(argv) == 0
    local = local_reference["out"]
    rows, expected = read_rows(out / "locomo.jsonl"), read_rows(local / "locomo.jsonl")
    assert len(rows) == 9 and list(rows) == list(expected)  # compacted in selection order, as a local run
    assert _stable(rows) == _stable(expected)
    assert all(len(r["candidates"]["items"]) > 1 for r in rows.values())
    report, expected_report = (json.loads((d / "locomo-report.json").read_text()) for d in (out, local))
    assert _stable(report) == _stable(expected_report)
    assert report["counts"]["done"] == 9 and not report["partial"]
    books, expected_books = (json.loads((d / "locomo-books.json").read_text()) for d in (out, local))
    assert _stable(books) == _stable(expected_books)
    assert not (out / "locomo-parts").exists() and not (out / "locomo.lock").exists()
    # a finished run resumed on the cluster has nothing to do and changes no row
    before = (out / "locomo.jsonl").read_text()
    assert main(argv + ["--resume"]) == 0
    assert (out / "locomo.jsonl").read_text() == before


class DiesOnce:
    """A reranker whose worker process kills itself (SIGKILL, as the kernel's OOM killer would) at its
    second call, once per test (the first process to create ``marker``). Every call is logged with its
    question, so the test sees which questions were ranked how often."""

    def __init__(self, inner, log: Path, marker: Path | None):
        self.inner, self.log, self.marker, self.calls = inner, log, marker, 0

    def rank(self, query, passages, prefix=None):
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(query + "\n")
        self.calls += 1
        if self.calls == 2 and self.marker is not None:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.rank(query, passages, prefix=prefix)


def tiny_configs(settings, log: Path, marker: Path | None = None):
    """bm25, hybrid, QR on a tiny Qwen2 and the pointwise baseline on a tiny Qwen3 (seeded: the same
    weights in every process), built where they run: in a Ray worker, the worker holds the models."""
    qr = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=[(0, 1), (1, 2)], settings=settings)
    pointwise = PointwiseReranker(model=(tiny_model("qwen3"), tiny_tokenizer()), settings=settings)
    return build_configs(["bm25", "hybrid", "qr", "pointwise"], settings,
                         rerankers={"qr": qr, "pointwise": DiesOnce(pointwise, log, marker)})


def test_a_killed_worker_loses_no_finished_question(ray_cluster, settings, tmp_path, one_thread):
    """The local run on one torch thread, as a 1-CPU worker runs (Ray sets its OMP_NUM_THREADS): the same
    arithmetic, so the same scores to the last stored digit."""
    from bookqa.lab.scale.ray_jobs import RayRunner
    from bookqa.scale.cluster import RayOptions

    esettings = eval_settings(settings.replace(dense_weight=0.0, chunk_tokens=32), tmp_path / "evalbooks")
    data = load_dataset("locomo", THREE_BOOKS)
    selection = select(data)
    local_configs = functools.partial(tiny_configs, esettings, tmp_path / "local.log")
    local = Runner(data, selection, local_configs(), esettings, tmp_path / "local", k=5, show_bar=False)
    expected = local.run()
    assert local.calls == {"bm25": 9, "hybrid": 9, "qr": 9, "pointwise": 9}

    log, marker = tmp_path / "ray.log", tmp_path / "killed"
    make = functools.partial(tiny_configs, esettings, log, marker)
    runner = RayRunner(data, selection, make(), esettings, tmp_path / "ray", k=5, show_bar=False, make_configs=make,
                       ray=RayOptions(address=ray_cluster, workers=2, retries=2))
    rows = runner.run()
    assert marker.exists() and runner.workers == 2  # a worker did die mid-book
    assert _stable(rows) == _stable(expected)
    assert _stable(read_rows(tmp_path / "ray" / "locomo.jsonl")) == _stable(expected)
    # The worker died in the pointwise step of its book's second question, after the first question's row
    # and the second's bm25, hybrid and qr results were stored: the retried book ran none of them again.
    # (The dead try's own calls are not counted: what the finished tries ran is what was left.)
    assert runner.calls == {"bm25": 7, "hybrid": 7, "qr": 7, "pointwise": 8}
    ranked = collections.Counter(log.read_text(encoding="utf-8").splitlines())
    assert sorted(ranked) == sorted(r["question"] for r in expected.values())
    assert sorted(ranked.values()) == [1] * 8 + [2]  # only the question it died on was ranked again
    report, expected_report = (json.loads((tmp_path / d / "locomo-report.json").read_text()) for d in ("ray", "local"))
    assert _stable(report) == _stable(expected_report)


def _files(book_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(book_dir)): p.read_bytes() for p in sorted(book_dir.rglob("*")) if p.is_file()}


def test_ingest_folder_on_ray_makes_the_books_of_local_ingests(ray_cluster, local_reference, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setenv("BOOKQA_CHUNK_TOKENS", "32")  # as the local ingests were made
    home = tmp_path / "home"
    assert main(["-q", "--home", str(home), "ingest", str(local_reference["folder"]), "--ray", ray_cluster]) == 0
    printed = capsys.readouterr().out
    assert printed.count("added: ") == 3
    local_books = local_reference["home"] / "books"
    names = sorted(p.name for p in (home / "books").iterdir() if not p.name.startswith("."))  # not .locks
    assert names == sorted(p.name for p in local_books.iterdir() if not p.name.startswith(".")) and len(names) == 3
    for name in names:
        got, want = _files(home / "books" / name), _files(local_books / name)
        assert sorted(got) == sorted(want), name
        for path in want:
            if path == "manifest.json":
                assert _stable_manifest(got[path]) == _stable_manifest(want[path]), name
            elif path in TIMED_FILES:
                assert _stable(json.loads(got[path])) == _stable(json.loads(want[path])), f"{name}/{path}"
            else:  # text, chunks, the BM25 index, the embeddings: byte for byte
                assert got[path] == want[path], f"{name}/{path}"
    # a second ingest of the folder finds every book built and runs no stage
    assert main(["-q", "--home", str(home), "ingest", str(local_reference["folder"]), "--ray", ray_cluster]) == 0
    assert capsys.readouterr().out.count("unchanged: ") == 3


# A book's files that record how long they took to make (so do two local ingests of one file).
TIMED_FILES = {"summaries.json"}


def _stable_manifest(raw: bytes) -> dict:
    manifest = json.loads(raw)
    manifest.pop("created", None)
    for stage in manifest.get("stages", {}).values():
        stage.pop("finished", None)
        for name in TIMED_FILES:
            stage.get("files", {}).pop(name, None)  # their checksums differ with the time recorded
    return _stable(manifest)  # and a stage's own "seconds"


def test_ray_flags_are_documented_and_checked(tmp_path, capsys):
    for command in ("eval", "ingest"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "--ray [ADDRESS]" in text and "--ray-workers N" in text and "docs/scale-out.md" in text
    book = FIXTURES / "ingest" / "gutenberg_mini.txt"
    assert main(["-q", "--home", str(tmp_path), "ingest", str(book), "--ray", "--ray-cpus", "0"]) == 2
    assert "--ray-cpus must be positive" in capsys.readouterr().err
    assert main(["-q", "--home", str(tmp_path), "ingest", str(FIXTURES / "ingest"), "--ray", "--title", "x"]) == 2
    assert "--title names one book" in capsys.readouterr().err
    # nothing listens there: a one-line error at once (Ray alone would retry for minutes)
    assert main(["-q", "--home", str(tmp_path), "ingest", str(book), "--ray", f"127.0.0.1:{free_port()}"]) == 2
    assert "no Ray cluster answers at 127.0.0.1:" in capsys.readouterr().err
    assert not (tmp_path / "books").exists()


def test_rows_left_by_an_interrupted_distributed_run_are_resumed_locally(settings, tmp_path):
    """A driver that died leaves its workers' per-book files; the next run (here a local one) takes their
    rows as done, compacts them into the results file and removes the files."""
    from bookqa.lab.evaluate.runner import part_path

    esettings = eval_settings(settings.replace(dense_weight=0.0, chunk_tokens=32), tmp_path / "evalbooks")
    data = load_dataset("locomo", THREE_BOOKS)
    selection = select(data)
    out = tmp_path / "out"
    # what a worker did for the first book before the driver died: its rows in the book's own file
    worker = Runner(data, selection, build_configs(["bm25", "hybrid"], esettings), esettings, out, k=5, show_bar=False)
    first = selection.documents[0]
    worker.append_path = part_path(worker.parts_dir, first.id)
    worker.parts_dir.mkdir(parents=True)
    worker.run_documents({first.id: data.questions_of(first.id)}, {}, {}, lambda n, title=None: None)
    assert len(read_rows(worker.append_path)) == 3 and not (out / "locomo.jsonl").exists()
    again = Runner(data, selection, build_configs(["bm25", "hybrid"], esettings), esettings, out, k=5,
                   show_bar=False, resume=True)
    rows = again.run()
    assert again.calls == {"bm25": 6, "hybrid": 6}  # the first book's three questions were not run again
    assert len(rows) == 9 and len(read_rows(out / "locomo.jsonl")) == 9
    assert not worker.parts_dir.exists()

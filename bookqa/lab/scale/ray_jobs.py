"""``bookqa eval --ray``: the evaluation's books spread over Ray workers.

Why actors, not Ray Data's ``map_batches``: the unit of work is a book (ingest it, load its indexes,
run every configuration on its questions) and its result is a rows file written as it goes, so that a
run resumes per question. An actor pool keeps each worker's models loaded across books (the reranker,
the embedder, the generator: seconds to minutes to load), hands out one book per call to whichever
worker is free, and retries a book on a restarted worker after a crash. A dataset pipeline would add
row batching and an output sink that this job does not have (its output is the rows files), and a
retried batch would not resume from the rows its dead try had stored.

The driver is a ``Runner`` whose book loop is replaced: it holds the run lock, writes the run
description, draws the one progress bar, and when the workers are done compacts the results file and
writes the report, exactly as a local run. Each worker is a ``Runner`` of its own over the same
selection, appending a book's rows to ``<out>/<dataset>-parts/<book>.jsonl``; a retried book starts
from that file, so questions (and configurations of a question) that were finished are not run again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ...scale.cluster import RayOptions, actor_class, connected, done_counter, task_error, worker_count
from ...settings import Settings
from ..evaluate.configs import Config
from ..evaluate.datasets.base import EvalData, Question
from ..evaluate.runner import Runner, Selection, book_record, part_path, read_parts, read_rows

POLL_S = 0.5  # how often the driver moves the progress bar while no book finishes


@dataclass
class WorkerSpec:
    """What a worker needs to rebuild the driver's run: the selection, the settings and a function that
    makes the configurations (built in the worker, so their models load there)."""

    data: EvalData
    selection: Selection
    make_configs: Callable[[], Sequence[Config]]
    settings: Settings
    out_dir: Path
    k: int
    answers: bool
    answer_config: str
    shuffle_check: bool
    shuffle_seed: int
    rank_all: bool = False


class EvalWorker:
    """One Ray worker: a ``Runner`` whose configurations' models are loaded once (at its first book) and
    kept for every later book."""

    def __init__(self, spec: WorkerSpec, counter: Any):
        self.spec = spec
        self.counter = counter
        self.runner: Optional[Runner] = None

    def _runner(self) -> Runner:
        if self.runner is None:
            s = self.spec
            self.runner = Runner(s.data, s.selection, s.make_configs(), s.settings, s.out_dir, k=s.k,
                                 answers=s.answers, answer_config=s.answer_config, resume=True, show_bar=False,
                                 shuffle_check=s.shuffle_check, shuffle_seed=s.shuffle_seed, rank_all=s.rank_all)
            for config in self.runner.configs:
                config.setup()
        return self.runner

    def run_book(self, doc_id: str, question_ids: Sequence[str], stored: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Run one book's pending questions; ``stored``: their rows in the results file when the job began.
        Rows go to the book's own file, which a retry of this call reads first (newer than ``stored``)."""
        runner = self._runner()
        doc = runner.data.document(doc_id)
        wanted = set(question_ids)
        questions = [q for q in runner.selection.questions if q.id in wanted]
        runner.append_path = part_path(runner.parts_dir, doc_id)
        runner.parts_dir.mkdir(parents=True, exist_ok=True)
        existing = {**stored, **read_rows(runner.append_path)}
        calls = dict(runner.calls)
        prepared = runner.preparer.prepare(doc)
        runner.run_questions(prepared, doc, questions, existing, lambda q: self.counter.done.remote(q.id))
        return {"doc_id": doc_id, "info": prepared.info(),
                "calls": {name: n - calls.get(name, 0) for name, n in runner.calls.items()}}


class RayRunner(Runner):
    """A ``Runner`` whose books run on a Ray cluster (``ray``: how). ``make_configs`` builds the same
    configurations as ``configs`` (the driver's, used for bookkeeping only: no model loads here)."""

    def __init__(self, data: EvalData, selection: Selection, configs: Sequence[Config], settings: Settings,
                 out_dir: Path, k: int, *, make_configs: Callable[[], Sequence[Config]],
                 ray: RayOptions = RayOptions(), **kwargs):
        super().__init__(data, selection, configs, settings, out_dir, k, **kwargs)
        self.make_configs = make_configs
        self.ray = ray
        self.workers = 0  # how many the last run used

    def run_documents(self, by_doc: dict[str, list[Question]], existing: dict[str, dict[str, Any]],
                      books_info: dict[str, Any], advance) -> None:
        from ray.util import ActorPool

        docs = [d for d in self.selection.documents if by_doc.get(d.id)]
        if not docs:
            return
        spec = WorkerSpec(self.data, self.selection, self.make_configs, self.settings, self.out_dir, self.k,
                          self.answers, self.answer_config, self.shuffle_check, self.shuffle_seed, self.rank_all)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with connected(self.ray) as ray:
            counter = done_counter(ray)
            worker = actor_class(ray, EvalWorker, self.ray)
            self.workers = worker_count(ray, self.ray, len(docs))
            # The spec itself, not a reference to one put in the object store: a restarted worker is built
            # again from its arguments, which Ray keeps with the actor.
            actors = [worker.remote(spec, counter) for _ in range(self.workers)]
            pool = ActorPool(actors)
            for doc in docs:
                qs = by_doc[doc.id]
                stored = {q.id: existing[q.id] for q in qs if q.id in existing}
                pool.submit(lambda actor, job: actor.run_book.remote(*job), (doc.id, [q.id for q in qs], stored))
            shown = 0
            finished = False
            try:
                while pool.has_next():
                    try:
                        result = pool.get_next_unordered(timeout=POLL_S)
                    except TimeoutError:
                        result = None
                    if result is not None:
                        existing.update(read_rows(part_path(self.parts_dir, result["doc_id"])))
                        books_info[result["doc_id"]] = book_record(result["info"], books_info.get(result["doc_id"]))
                        self._write_books(books_info)
                        for name, n in result["calls"].items():
                            self.calls[name] = self.calls.get(name, 0) + n
                    count = ray.get(counter.count.remote())
                    advance(count - shown)
                    shown = count
                finished = True
            except Exception as exc:
                raise task_error(ray, exc) from None
            finally:
                if not finished:
                    # Stopped early (Ctrl-C, a failed book): stop the workers; what they stored is compacted
                    # into the results file, and their files are kept in case one was still writing.
                    for actor in actors:
                        ray.kill(actor, no_restart=True)
                    self.keep_parts = True
                    existing.update(read_parts(self.parts_dir))

    def _write_books(self, books_info: dict[str, Any]) -> None:
        from ...fileio import write_json

        write_json(self.books_path, books_info)

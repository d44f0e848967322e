"""The evaluation loop: select questions, ingest their documents, run every configuration on each
question, generate answers, and append one JSON row per question as soon as it is finished.

Results file ``<out>/<dataset>.jsonl``: one row per question (a later row for the same question replaces
an earlier one; a row is stored after each configuration finishes, and the file is compacted to one row
per question when the run ends). With ``resume`` a
question whose row already holds every requested configuration (and its answer) is skipped; a row that
lacks some configurations gets only those run, on the candidates stored in the row, so configurations
can be added to a finished run later (e.g. once a heads file exists). A row made with other chunks or
another K is redone from scratch.

A distributed run (``bookqa eval --ray``, lab/scale/ray_jobs.py) runs the same per-book loop in workers,
each appending a book's rows to its own file under ``<out>/<dataset>-parts/``; the run that compacts the
results file merges them (a run interrupted before that leaves them, and the next run, local or
distributed, reads them as rows of the results file).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ...errors import ConfigError, InputError
from ...fileio import portable_path, read_json, write_json, write_jsonl
from ...progress import Progress, no_progress
from ...retrieve import search
from ...settings import Settings
from .configs import CANDIDATES_METHOD, Config, FirstStageConfig, QuestionContext, closure
from .corpus import BookPreparer, PreparedBook
from .datasets.base import Document, EvalData, Question
from .gold import gold_chunks

# Datasets whose questions get a generated answer by default (MuSiQue/HotpotQA report retrieval only).
ANSWER_BY_DEFAULT = ("narrativeqa", "locomo", "quality", "detectiveqa")


@dataclass
class Selection:
    documents: list[Document]
    questions: list[Question]
    excluded: dict[str, int] = field(default_factory=dict)

    def rows_of(self, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The stored rows of the selected questions, in selection order (a results file can hold more)."""
        order = {q.id: i for i, q in enumerate(self.questions)}
        return sorted((r for r in rows.values() if str(r["qid"]) in order), key=lambda r: order[str(r["qid"])])


def select(data: EvalData, books: Optional[Sequence[str]] = None, per_book: Optional[int] = None,
           limit: Optional[int] = None, include_adversarial: bool = False, seed: int = 0,
           sample: Optional[int] = None, exclude_ids: Optional[set[str]] = None,
           exclude_reason: str = "listed in --exclude-ids") -> Selection:
    """Which documents and questions a run covers, deterministically.

    ``books``: a single number N (the first N documents that have questions), a single range "A-B"
    (documents A..B of those, 0-based, inclusive) or document ids / unique id prefixes / parts of titles. ``per_book``: at most N questions per document (a sample seeded by ``seed``
    and the document id, in file order). ``sample``: a seeded sample of N questions of the whole
    selection, in file order. ``limit``: the first N questions of what is left. LoCoMo's adversarial
    category is left out unless asked for (the QRRanker paper reports the other four). ``exclude_ids``:
    question ids left out first (e.g. the items QR heads were detected on).
    """
    removed: dict[str, list[Question]] = {}
    questions = list(data.questions)
    if exclude_ids:
        removed[exclude_reason] = [q for q in questions if q.id in exclude_ids]
        questions = [q for q in questions if q.id not in exclude_ids]
    if data.name == "locomo" and not include_adversarial:
        removed["adversarial (LoCoMo category 5)"] = [q for q in questions if q.category == 5]
        questions = [q for q in questions if q.category != 5]
    with_questions = [d for d in data.documents if any(q.doc_id == d.id for q in questions)]
    if books:
        span = re.fullmatch(r"(\d+)-(\d+)", str(books[0])) if len(books) == 1 else None
        if len(books) == 1 and str(books[0]).isdigit():
            docs = with_questions[:int(books[0])]
        elif span and not any(d.id == books[0] for d in with_questions):
            # "A-B": documents A..B (0-based, inclusive) of those with questions, in file order
            # (LoCoMo: conversations, as `bookqa heads build-seeds --select A-B`).
            docs = with_questions[int(span.group(1)):int(span.group(2)) + 1]
        else:
            docs = []
            for name in books:
                low = str(name).lower()
                found = ([d for d in with_questions if d.id == name]
                         or [d for d in with_questions if d.id.startswith(str(name))]
                         or [d for d in with_questions if low in d.title.lower()])
                if not found:
                    raise InputError(f"no {data.name} document matches {name!r}")
                if len(found) > 1:
                    raise InputError(f"{name!r} matches {len(found)} {data.name} documents: "
                                     + ", ".join(d.id for d in found[:10]))
                if found[0] not in docs:
                    docs.append(found[0])
    else:
        docs = with_questions
    chosen_ids = {d.id for d in docs}
    # counted on the chosen documents only, so the report says what these documents lost
    excluded = {reason: n for reason, qs in removed.items() if (n := sum(q.doc_id in chosen_ids for q in qs))}
    by_doc: dict[str, list[Question]] = {}
    for q in questions:
        if q.doc_id in chosen_ids:
            by_doc.setdefault(q.doc_id, []).append(q)
    selected: list[Question] = []
    for d in docs:
        qs = by_doc.get(d.id, [])
        if per_book and len(qs) > per_book:
            # A seeded sample, kept in file order: files often group questions by type (LoCoMo by
            # category), so the first N would be biased; a smaller N gives a subset of a larger one.
            order = list(range(len(qs)))
            random.Random(f"{seed}:{d.id}").shuffle(order)
            qs = [qs[i] for i in sorted(order[:per_book])]
        selected.extend(qs)
    if sample is not None and len(selected) > sample:
        # A seeded sample of the whole selection, in file order (a smaller N is a subset of a larger N).
        order = list(range(len(selected)))
        random.Random(f"{seed}:sample").shuffle(order)
        selected = [selected[i] for i in sorted(order[:sample])]
    if limit is not None:
        selected = selected[:limit]
    used = {q.doc_id for q in selected}
    return Selection([d for d in docs if d.id in used], selected, excluded)


def read_id_list(paths: Sequence[Path | str], dataset: str) -> set[str]:
    """Question ids from files holding one id per line, or JSONL rows with an "id" (head-detection seed
    files); a leading "<dataset>:" is dropped ("musique:2hop__1_2" -> "2hop__1_2")."""
    ids: set[str] = set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    line = str(json.loads(line)["id"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{path}, line {n}: expected a JSON object with an 'id'") from None
            if line.startswith(f"{dataset}:"):
                line = line[len(dataset) + 1:]
            ids.add(line)
    return ids


def part_path(parts_dir: Path, doc_id: str) -> Path:
    """The rows file of one document in a distributed run: a safe name, unique per document id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id)[:60]
    return Path(parts_dir) / f"{safe}-{hashlib.sha1(doc_id.encode('utf-8')).hexdigest()[:8]}.jsonl"


def read_parts(parts_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows of every per-document file a distributed run left (newer than the results file's)."""
    rows: dict[str, dict[str, Any]] = {}
    if Path(parts_dir).is_dir():
        for path in sorted(Path(parts_dir).glob("*.jsonl")):
            rows.update(read_rows(path))
    return rows


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a results file by question id (the last row of a question wins). A torn last line (a run
    killed mid-write) is ignored; any other bad line is an error."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise InputError(f"{path}, line {n}: not valid JSON; the results file is damaged") from None
        rows[str(row["qid"])] = row
    return rows


class Runner:
    def __init__(self, data: EvalData, selection: Selection, configs: Sequence[Config], settings: Settings,
                 out_dir: Path, k: int, answers: bool = False, answer_config: str = "qr", generator=None,
                 resume: bool = False, progress: Progress = no_progress, show_bar: bool = True,
                 meta: Optional[dict[str, Any]] = None, shuffle_check: bool = False, shuffle_seed: int = 0,
                 rank_all: bool = False):
        self.data = data
        self.selection = selection
        self.configs = list(configs)
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.k = int(k)
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        self.answers = answers
        self.answer_config = answer_config
        self.generator = generator
        self.resume = resume
        self.progress = progress
        self.show_bar = show_bar
        self.meta = dict(meta or {})
        # Also run every order-sensitive configuration on a seeded shuffle of the same candidates
        # (stored in the row under "shuffled"; the report compares its recall with the original order's).
        self.shuffle_check = shuffle_check
        self.shuffle_seed = int(shuffle_seed)
        self.shuffled_calls: dict[str, int] = {}
        # Rank questions without gold chunks too: recall leaves them out, but answers judged downstream
        # (bookqa eval-answers) read every question's ranking.
        self.rank_all = rank_all
        names = [c.name for c in self.configs]
        if answers and answer_config not in names:
            raise ConfigError(f"answers use configuration {answer_config!r}, which is not in this run "
                              f"({', '.join(names)}); add it or pass --no-answers")
        self.answer_needs = closure(answer_config, self.configs) if answers else set()
        self.results_path = self.out_dir / f"{data.name}.jsonl"
        self.append_path = self.results_path  # where rows are appended (a distributed worker: its book's file)
        self.parts_dir = self.out_dir / f"{data.name}-parts"
        self.keep_parts = False  # set by a distributed run that stopped while its workers may still write
        self.books_path = self.out_dir / f"{data.name}-books.json"
        self.run_path = self.out_dir / f"{data.name}-run.json"
        self.preparer = BookPreparer(settings, need_dense=self._needs_dense(),
                                     need_summaries=any(c.needs_summaries for c in self.configs), progress=progress)
        self.calls: dict[str, int] = {c.name: 0 for c in self.configs}
        self.rows: dict[str, dict[str, Any]] = {}  # question id -> row, as stored

    def _needs_dense(self) -> bool:
        needs_candidates = any(c.needs_candidates for c in self.configs)
        candidates_dense = needs_candidates and self.settings.dense_weight > 0
        return candidates_dense or any(c.needs_dense for c in self.configs)

    # --- bookkeeping ---------------------------------------------------------------------------
    def _todo(self, q: Question, row: Optional[dict[str, Any]], chunks_fp: Optional[str]) -> bool:
        if row is None:
            return True
        if chunks_fp is not None and row.get("book", {}).get("chunks_fingerprint") != chunks_fp:
            return True
        if row.get("k") != self.k:
            return True
        wanted = self._wanted(bool(row.get("gold", {}).get("chunk_ids")))
        if any(name not in row.get("configs", {}) for name in wanted):
            return True
        if self._shuffle_todo(row, wanted):
            return True
        return self._wants_answer(row)

    def _shuffle_todo(self, row: dict[str, Any], wanted: Sequence[str]) -> list[Config]:
        """Order-sensitive configurations of this run still missing their shuffled-order result."""
        if not self.shuffle_check or not row.get("gold", {}).get("chunk_ids"):
            return []
        if "candidates" in row and len(row["candidates"].get("items", [])) < 2:
            return []  # one candidate has one order
        done = row.get("shuffled", {}).get("configs", {})
        return [c for c in self.configs if c.order_sensitive and c.name in wanted and c.name not in done]

    def _wanted(self, has_gold: bool) -> list[str]:
        """Configurations to run for a question: all when it has gold chunks (recall needs them) or the
        run ranks every question, otherwise only those its answer needs."""
        if has_gold or self.rank_all:
            return [c.name for c in self.configs]
        return [c.name for c in self.configs if c.name in self.answer_needs]

    def _wants_answer(self, row: dict[str, Any]) -> bool:
        stored = row.get("answer", {})
        # an answer of another configuration or style is made again (answers before styles were prose)
        return self.answers and (stored.get("config") != self.answer_config
                                 or stored.get("style", "prose") != self.settings.answer_style)

    def _append(self, row: dict[str, Any]) -> None:
        with open(self.append_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _checkpoint(self, row: dict[str, Any]) -> None:
        """Store a question's row after each configuration, so an interruption loses at most the one
        that was running (a generative baseline can take minutes); resume runs only what is missing."""
        row["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.rows[str(row["qid"])] = row  # the final compaction rewrites the file from these
        self._append(row)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, dict[str, Any]]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with _RunLock(self.out_dir / f"{self.data.name}.lock"):
            return self._run()

    def _run(self) -> dict[str, dict[str, Any]]:
        existing = self.rows = read_rows(self.results_path)
        existing.update(read_parts(self.parts_dir))
        if existing and not self.resume:
            raise ConfigError(f"{self.results_path} already holds {len(existing)} results; pass --resume to "
                              "continue that run, or choose another --out")
        run_meta = {**self.meta, "dataset": self.data.name, "source": portable_path(str(self.data.source)), "k": self.k,
                    "configs": [c.name for c in self.configs], "answers": self.answers,
                    "answer_config": self.answer_config if self.answers else None, "top_n": self.settings.top_n,
                    "shuffle_check": self.shuffle_check,
                    "selected_questions": len(self.selection.questions),
                    "selected_documents": [d.id for d in self.selection.documents],
                    "excluded": self.selection.excluded, "notes": self.data.notes,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(self.run_path, run_meta)
        books_info: dict[str, Any] = read_json(self.books_path) if self.books_path.is_file() else {}

        # Rows made with other chunks are only detected once the book is open; questions whose row is
        # complete for this run's K and configurations are skipped without opening their book.
        pending = [q for q in self.selection.questions if self._todo(q, existing.get(q.id), None)]
        done_before = len(self.selection.questions) - len(pending)
        bar = None
        if self.show_bar:
            from tqdm import tqdm

            bar = tqdm(total=len(self.selection.questions), initial=done_before, desc=f"eval {self.data.name}",
                       unit="q", file=sys.stderr, dynamic_ncols=True)

        def advance(n: int, title: Optional[str] = None) -> None:
            if bar is not None and n:
                if title:
                    bar.set_postfix_str(title[:30], refresh=False)
                bar.update(n)

        try:
            by_doc: dict[str, list[Question]] = {}
            for q in pending:
                by_doc.setdefault(q.doc_id, []).append(q)
            self.run_documents(by_doc, existing, books_info, advance)
        finally:
            if bar is not None:
                bar.close()
            # Also after an interruption: the results file is compacted and the report shows what is done.
            self.compact(existing)
            self.write_report(existing, run_meta)
            if not self.keep_parts:  # their rows are in the results file now
                for path in sorted(self.parts_dir.glob("*.jsonl")) if self.parts_dir.is_dir() else []:
                    path.unlink()
                if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
                    self.parts_dir.rmdir()
        return existing

    def run_documents(self, by_doc: dict[str, list[Question]], existing: dict[str, dict[str, Any]],
                      books_info: dict[str, Any], advance) -> None:
        """Run the pending questions (``by_doc``: document id -> questions), book after book, in this
        process; ``advance(n, title)`` moves the progress bar. A distributed run replaces this loop."""
        if by_doc:
            for c in self.configs:
                c.setup()
        for doc in self.selection.documents:
            qs = by_doc.get(doc.id)
            if not qs:
                continue
            prepared = self.preparer.prepare(doc)
            books_info[doc.id] = book_record(prepared.info(), books_info.get(doc.id))
            write_json(self.books_path, books_info)
            self.run_questions(prepared, doc, qs, existing, lambda q: advance(1, doc.title))

    def run_questions(self, prepared: PreparedBook, doc: Document, qs: Sequence[Question],
                      existing: dict[str, dict[str, Any]], done) -> None:
        """One book's questions: each row is appended as it is finished (``done(question)`` is called for
        it, and for a question found complete); a question whose stored row holds part of the work gets
        only what is missing."""
        self.warm_up(prepared.book)
        chunks_fp = prepared.info()["chunks_fingerprint"]
        for q in qs:
            old = existing.get(q.id)
            if old is not None and not self._todo(q, old, chunks_fp):
                done(q)
                continue
            if old is not None and (old.get("book", {}).get("chunks_fingerprint") != chunks_fp
                                    or old.get("k") != self.k):
                old = None  # other chunks or another K: the stored candidates do not apply
            row = self.run_question(prepared, doc, q, old)
            existing[q.id] = row
            self._append(row)
            done(q)

    def write_report(self, rows: dict[str, dict[str, Any]], meta: dict[str, Any]) -> tuple[Path, Path]:
        from .report import write_report

        self.report_paths = write_report(self.out_dir, self.data.name, self.selection.rows_of(rows), meta)
        return self.report_paths

    def warm_up(self, book) -> None:
        """Load the book's indexes (and, once, the embedder and the generator) before timing anything, so
        a question's seconds are what a user waits for an already open book, not one-time loading."""
        methods = {c.method for c in self.configs if isinstance(c, FirstStageConfig)}
        if any(c.needs_candidates for c in self.configs):
            methods.add(CANDIDATES_METHOD)
        for method in sorted(methods):
            search(book, book.title or "warm up", k=1, method=method, settings=self.settings)
        if self.answers and self.generator is None:
            from ...generate import get_generator

            self.generator = get_generator(self.settings, self.progress)
            self.generator.count_tokens("warm up")  # a local model loads on first use

    def compact(self, rows: dict[str, dict[str, Any]]) -> None:
        """Rewrite the results file with one row per question, in selection order (atomic)."""
        order = {q.id: i for i, q in enumerate(self.selection.questions)}
        ordered = sorted(rows.values(), key=lambda r: (order.get(str(r["qid"]), len(order)), str(r["qid"])))
        write_jsonl(self.results_path, ordered)

    def run_question(self, prepared: PreparedBook, doc: Document, q: Question,
                     old: Optional[dict[str, Any]]) -> dict[str, Any]:
        book = prepared.book
        chunks = book.chunks
        t0 = time.perf_counter()
        gold = gold_chunks(q, chunks, book.text, doc)
        gold_seconds = time.perf_counter() - t0
        row = old or {
            "dataset": self.data.name, "qid": q.id, "doc_id": q.doc_id, "question": q.question,
            "references": q.answers, "options": q.options, "answer_letter": q.answer_letter,
            "category": q.category, "subset": q.subset, "k": self.k,
            "book": {"id": book.id, "chunks": len(chunks), "chunks_fingerprint": prepared.info()["chunks_fingerprint"]},
            "configs": {}, "timings": {},
        }
        # Question data and gold are refreshed from the loader on every visit (cheap, and a fixed loader
        # fixes old rows); candidates and configuration results are kept.
        row.update(question=q.question, references=q.answers, options=q.options, answer_letter=q.answer_letter,
                   category=q.category, subset=q.subset)
        row["gold"] = {**gold.to_json(), "evidence": q.evidence.to_json()}
        row["timings"]["gold"] = round(gold_seconds, 4)
        wanted = set(self._wanted(bool(gold.chunk_ids)))
        todo = [c for c in self.configs if c.name in wanted and c.name not in row["configs"]]
        if "candidates" not in row and any(c.needs_candidates or c.name == CANDIDATES_METHOD for c in todo):
            t = time.perf_counter()
            found = search(book, q.question, k=self.k, method=CANDIDATES_METHOD, settings=self.settings)
            seconds = time.perf_counter() - t
            row["candidates"] = {"method": CANDIDATES_METHOD, "k": self.k, "seconds": round(seconds, 4),
                                 "items": [{"chunk_id": c.chunk_id, "rank": c.rank, "score": round(c.score, 6),
                                            "ranks": c.ranks} for c in found]}
        cands = row.get("candidates", {})
        ctx = QuestionContext(book=book, question=q.question, k=self.k, settings=self.settings,
                              candidates=cands.get("items", []), candidates_seconds=float(cands.get("seconds", 0.0)),
                              results=row["configs"], passes=row.setdefault("passes", {}))
        for config in todo:
            missing = [d for d in config.depends if d not in row["configs"]]
            if missing:
                raise ConfigError(f"configuration {config.name} needs {', '.join(missing)} first")
            result = config.run(ctx)
            self.calls[config.name] += 1
            row["configs"][config.name] = result.to_json()
            self._checkpoint(row)
        self.run_shuffled(row, ctx, sorted(wanted))
        if not row.get("passes"):
            row.pop("passes", None)
        if self._wants_answer(row):
            row["answer"] = self.answer(book, q, row)
        row["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return row

    def run_shuffled(self, row: dict[str, Any], ctx: QuestionContext, wanted: Sequence[str]) -> None:
        """The shuffle check: order-sensitive configurations on a seeded shuffle of the same candidates
        (the order is drawn once per question and stored, so resumed and added configurations see it)."""
        todo = self._shuffle_todo(row, wanted)
        if not todo or len(ctx.candidate_ids) < 2:
            return
        shuffled = row.get("shuffled")
        if shuffled is None or sorted(shuffled.get("order", [])) != sorted(ctx.candidate_ids):
            order = list(ctx.candidate_ids)
            random.Random(f"bookqa-shuffle:{self.shuffle_seed}:{row['qid']}").shuffle(order)
            shuffled = row["shuffled"] = {"seed": self.shuffle_seed, "order": order, "configs": {}}
        sctx = dataclasses.replace(ctx, prompt_order=list(shuffled["order"]), results=shuffled["configs"])
        for config in todo:
            missing = [d for d in config.depends if d not in shuffled["configs"]]
            if missing:
                raise ConfigError(f"configuration {config.name} needs {', '.join(missing)} first")
            shuffled["configs"][config.name] = config.run(sctx).to_json()
            self.shuffled_calls[config.name] = self.shuffled_calls.get(config.name, 0) + 1
            self._checkpoint(row)

    def answer(self, book, q: Question, row: dict[str, Any]) -> dict[str, Any]:
        from .answers import generate_answer, score_answer

        if self.generator is None:
            from ...generate import get_generator

            self.generator = get_generator(self.settings, self.progress)
        ranked = row["configs"][self.answer_config]["chunk_ids"]
        result = generate_answer(self.generator, q, book.chunks, ranked, title=book.title, top_n=self.settings.top_n,
                                 max_tokens=self.settings.answer_max_tokens, config=self.answer_config,
                                 style=self.settings.answer_style)
        result["scores"] = score_answer(self.data.name, row, result)
        return result


class _RunLock:
    """One run per results file: two processes appending to the same file would interleave rows."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "_RunLock":
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(self.path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise ConfigError(f"another bookqa eval (process {pid}) is writing to {self.path.parent}; "
                                  "wait for it or stop it first") from None
            self.path.unlink(missing_ok=True)  # left by a run that died
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def book_record(info: dict[str, Any], stored: Optional[dict[str, Any]]) -> dict[str, Any]:
    """A book's line in the run's books file. A resumed run that found the book already built keeps the
    stored record of the build (its seconds and stages) instead of the zero-second open that found it."""
    same = stored is not None and all(stored.get(k) == info.get(k) for k in ("book_id", "chunks_fingerprint"))
    if not info.get("stages_run") and same:
        return {**info, "seconds": stored.get("seconds", info["seconds"]), "stages_run": stored.get("stages_run", [])}
    return info

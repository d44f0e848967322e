"""Training samples for QR training.

A sample is a seed row (bookqa/lab/detection/seeds.py) in retriever order, plus an optional summary prefix and
its split::

    {"id": "narrativeqa:…", "source": "narrativeqa", "question": "...", "candidates": ["text", ...],
     "gold": [indices of the positives], "doc_id": "...", "prefix": "..." (optional),
     "split": "train" | "val"}

so a sample file is also a seed file (``bookqa heads eval --data`` reads it), and a seed file written
with ``bookqa heads build-seeds --keep-order`` is a sample file (its split is then derived from the
document, as here). Samples come from the seed builders with ``shuffle=False`` (LoCoMo / NarrativeQA:
BM25 top-N over the document's chunks; MuSiQue / HotpotQA: the question's own paragraphs); questions
without a positive are dropped by the builders and counted by reason.

Split: by document, deterministic: a document goes to validation when the hash of "source:doc_id" falls
below ``val_frac``, independent of file order and of which other documents were built.

Summary prefix (``prefix=True``, NarrativeQA and LoCoMo; none for Wikipedia-style datasets, as in the
QRRanker paper's main results): extractive block summaries (bookqa's summarizer, ``summary_block``
chunks per block) over the document's chunks as the seed builder cut them, then the summaries covering
most of the sample's candidates within ``prefix_tokens`` (summarizer.prefix.select_prefix, the selection
used at inference).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ...errors import InputError
from ...fileio import read_jsonl, write_jsonl
from ..detection.seeds import (SeedItem, TokenBudget, build_seeds, locomo_chunks, read_rows, story_chunks,
                               story_target)

SPLITS = ("train", "val")
PREFIX_DATASETS = ("narrativeqa", "locomo")


@dataclass
class TrainSample:
    id: str
    source: str
    question: str
    candidates: list[str]  # retriever order
    gold: list[int]  # indices of the positives
    doc_id: str = ""
    prefix: Optional[str] = None  # summary prefix, or None
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "source": self.source, "question": self.question,
                               "candidates": self.candidates, "gold": self.gold, "doc_id": self.doc_id}
        if self.prefix:
            row["prefix"] = self.prefix
        row["split"] = self.split
        if self.meta:
            row["meta"] = self.meta
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any], val_frac: float) -> "TrainSample":
        item = SeedItem.from_json(row)  # validates ids, candidates, gold indices
        split = row.get("split") or split_of(item.source, item.doc_id or item.id, val_frac)
        if split not in SPLITS:
            raise InputError(f"sample {item.id!r}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        prefix = row.get("prefix")
        return cls(item.id, item.source, item.question, item.candidates, item.gold, item.doc_id,
                   str(prefix) if prefix else None, split, item.meta)


def split_of(source: str, doc_id: str, val_frac: float) -> str:
    """"val" for a deterministic ``val_frac`` share of documents (by a hash of source and document)."""
    h = int(hashlib.sha256(f"{source}:{doc_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)
    return "val" if h < val_frac else "train"


def read_samples(paths: Sequence[Path | str], val_frac: float) -> list[TrainSample]:
    samples: list[TrainSample] = []
    seen: set[str] = set()
    for path in paths:
        for row in read_rows(path, "sample"):
            s = TrainSample.from_json(row, val_frac)
            if s.id in seen:
                raise InputError(f"sample id {s.id!r} appears twice ({path})")
            seen.add(s.id)
            samples.append(s)
    return samples


def write_samples(path: Path | str, samples: Iterable[TrainSample]) -> int:
    rows = [s.to_json() for s in samples]
    write_jsonl(path, rows)
    return len(rows)


def fit_sample(sample: TrainSample, budget: TokenBudget, candidates: int, max_tokens: int,
               drops: Optional[dict] = None) -> Optional[TrainSample]:
    """The sample as the trainer sees it: the first ``candidates`` candidates (retriever order), each
    capped to ``max_tokens`` tokens. None (counted in ``drops``) when no positive, or no negative, is
    left."""
    keep = sample.candidates[:candidates]
    gold = sorted(g for g in set(sample.gold) if g < len(keep))
    reason = None
    if not gold:
        reason = f"no positive in the top {candidates}"
    elif len(gold) == len(keep):
        reason = "no negative candidate"
    if reason:
        if drops is not None:
            drops[reason] = drops.get(reason, 0) + 1
        return None
    return TrainSample(sample.id, sample.source, sample.question, [budget.cap(c, max_tokens) for c in keep], gold,
                       sample.doc_id, sample.prefix, sample.split, sample.meta)


def shuffled(sample: TrainSample, seed: int = 0) -> TrainSample:
    """The sample with its candidates in a random order, the same for a given id and seed; the gold
    indices follow their candidates."""
    rng = np.random.default_rng([seed, int(hashlib.sha256(sample.id.encode()).hexdigest()[:8], 16)])
    order = [int(i) for i in rng.permutation(len(sample.candidates))]
    gold = set(sample.gold)
    return replace(sample, candidates=[sample.candidates[i] for i in order],
                   gold=[new for new, old in enumerate(order) if old in gold])


# ---------------------------------------------------------------------------------------------
# building from the datasets
# ---------------------------------------------------------------------------------------------

@dataclass
class BuildReport:
    dataset: str
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)  # split -> number of documents
    with_prefix: int = 0
    candidates_per_sample: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_samples(dataset: str, path: Path | str, tokenizer, *, select: Optional[str] = None,
                  per_doc: Optional[int] = None, limit: Optional[int] = None, n_candidates: int = 20,
                  max_tokens: int = 120, val_frac: float = 0.1, prefix: bool = False, prefix_tokens: int = 512,
                  summary_block: int = 20, summary_fanin: int = 20) -> tuple[list[TrainSample], BuildReport]:
    """Samples of ``dataset`` (``tokenizer``: a ``tokenizers.Tokenizer`` of the reranker) in retriever
    order, with their split, and a report of what was kept and dropped."""
    drops: dict[str, int] = {}
    items = build_seeds(dataset, path, tokenizer, select=select, per_doc=per_doc, limit=limit,
                        n_candidates=n_candidates, max_tokens=max_tokens, shuffle=False, drops=drops)
    samples = []
    for it in items:
        if not it.gold:  # the builders already drop these; kept as a guard for the loss
            drops["no positive among the candidates"] = drops.get("no positive among the candidates", 0) + 1
            continue
        samples.append(TrainSample(it.id, it.source, it.question, it.candidates, it.gold, it.doc_id,
                                   split=split_of(it.source, it.doc_id or it.id, val_frac), meta=it.meta))
    report = BuildReport(dataset, dropped=drops)
    if prefix:
        if dataset not in PREFIX_DATASETS:
            raise InputError(f"summary prefixes are built for {', '.join(PREFIX_DATASETS)} only, not {dataset}")
        attach_prefixes(samples, dataset, path, tokenizer, max_tokens=max_tokens, prefix_tokens=prefix_tokens,
                        summary_block=summary_block, summary_fanin=summary_fanin)
    report.kept = len(samples)
    report.with_prefix = sum(1 for s in samples if s.prefix)
    for split in SPLITS:
        report.splits[split] = sum(1 for s in samples if s.split == split)
        report.documents[split] = len({s.doc_id for s in samples if s.split == split})
    report.candidates_per_sample = sum(len(s.candidates) for s in samples) / max(1, len(samples))
    return samples, report


def document_chunks(dataset: str, path: Path | str, budget: TokenBudget, max_tokens: int) -> dict[str, list[str]]:
    """Each document's chunk texts exactly as the seed builder cut them (same helpers, same limits as
    ``build_seeds`` passes for ``max_tokens``), by document id."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    if dataset == "narrativeqa":
        story_of: dict[str, str] = {}
        for r in read_jsonl(path):
            if r.get("story_available", True):
                story_of.setdefault(r["document_id"], r["story_file"])
        for doc, rel in story_of.items():
            story = path.parent / rel
            if story.is_file():
                out[doc] = story_chunks(story.read_text(encoding="utf-8", errors="replace"), budget,
                                        target_tokens=story_target(max_tokens), max_tokens=max_tokens)
    elif dataset == "locomo":
        for conv in json.loads(path.read_text(encoding="utf-8")):
            chunks = locomo_chunks(conv["conversation"], budget, min(100, max_tokens))
            out[conv["sample_id"]] = [budget.cap(c["text"], max(max_tokens, 120)) for c in chunks]
    else:
        raise InputError(f"no document chunks for {dataset}")
    return out


def attach_prefixes(samples: Sequence[TrainSample], dataset: str, path: Path | str, tokenizer, *,
                    max_tokens: int, prefix_tokens: int = 512, summary_block: int = 20,
                    summary_fanin: int = 20) -> None:
    """Set each sample's ``prefix``: extractive summaries covering most of its candidates."""
    from summarizer import Summarizer
    from summarizer.prefix import select_prefix

    budget = TokenBudget(tokenizer)
    by_doc: dict[str, list[TrainSample]] = {}
    for s in samples:
        by_doc.setdefault(s.doc_id, []).append(s)
    chunks_of = document_chunks(dataset, path, budget, max_tokens)
    summarizer = Summarizer(mode="extractive", block=summary_block, fanin=summary_fanin)
    for doc, doc_samples in by_doc.items():
        texts = chunks_of.get(doc)
        if not texts:
            raise InputError(f"{dataset} document {doc!r}: its chunks could not be rebuilt for the prefix")
        spans, pos = [], 0
        for t in texts:  # character spans only order the summaries; any increasing spans do
            spans.append((t, pos, pos + len(t)))
            pos += len(t) + 1
        tree = summarizer.summarize(spans)
        index: dict[str, int] = {}
        for k, t in enumerate(texts):
            index.setdefault(t, k)
        for s in doc_samples:
            missing = [c for c in s.candidates if c not in index]
            if missing:
                raise InputError(f"sample {s.id!r}: a candidate is not one of its document's chunks "
                                 f"(were the samples built with another --max-tokens?)")
            prefix = select_prefix(tree, [index[c] for c in s.candidates], budget.count, budget=prefix_tokens)
            s.prefix = prefix.text or None

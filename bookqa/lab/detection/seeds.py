"""Seed sets for QR head detection, built from a development dataset: a file of the data folder, given as
an argument, read with the dataset's loader in ``evaluate.datasets``.

A seed row (JSONL)::

    {"id": "musique:2hop__574419_270105", "source": "musique", "question": "...",
     "candidates": ["text", ...], "gold": [indices into candidates], "doc_id": "..."}

Candidates are kept short (≤ ``max_tokens`` tokens each, ~20 per item) so a detection prompt is ~2–3k
tokens. Candidate order is shuffled per item with a seed derived from the item id, so no head is
rewarded for attending to a fixed position (the gold is not systematically first).

Builders (one per dataset):

- MuSiQue: the question's own 20 paragraphs ("title\\ntext"), ``is_supporting`` = gold.
- HotpotQA (distractor): the 10 paragraphs, supporting titles = gold. Reads the official format
  (``context``/``supporting_facts``) and the IRCoT format (``contexts[].is_supporting``).
  Data licence: CC BY-SA 4.0 (see hotpotqa/LICENSE-or-SOURCE.md).
- LoCoMo: each session's turns packed into ~100-token chunks, never splitting a turn, each chunk headed
  by its session and date; gold = chunks holding an evidence dia_id (matched as written: "D30:05" does
  not match turn D30:5); candidates = BM25 top-20 over the conversation's chunks or gold + random
  negatives; questions of category 5 (adversarial, no answer in the conversation) are skipped. Data
  licence: CC BY-NC 4.0.
- NarrativeQA (dev questions): the story body (Gutenberg header/footer removed) packed from paragraphs
  and sentences into ~100-token chunks. Silver evidence rule: a chunk qualifies when its normalised text
  (lowercase, punctuation removed, articles a/an/the dropped, whitespace collapsed) contains a
  normalised reference answer as a whole-word phrase (answers shorter than 2 characters or that are
  only stop words are ignored; the references are taken as the file has them, "nan" included). Among
  qualifying chunks, the ones sharing the most distinct question content words (non-stop words) win;
  ties keep at most 3 chunks, in book order. Questions with no qualifying chunk, or whose best chunk
  shares no question word, are dropped. Candidates = BM25 top-20 for the question; items whose silver
  chunk is not among them are dropped.

BM25 here is the retriever's Lucene BM25 (``retrieve.bm25.lucene_bm25``) over lowercase ``\\w+`` words,
not the retriever's tokenizer: that one folds accents, drops a possessive "'s" and splits CJK into bigrams,
which ranks LoCoMo and NarrativeQA chunks differently and so would change the seed sets. Ranking keeps
every chunk, so a question sharing no word with enough chunks is still given ``n_candidates`` of them.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ...errors import InputError
from ...fileio import read_jsonl, write_jsonl
from ...retrieve.bm25 import lucene_bm25
from ...retrieve.textsplit import ENGLISH_STOPWORDS

DATASETS = ("musique", "hotpotqa", "locomo", "narrativeqa")
WORD = re.compile(r"\w+")
# The silver-evidence rule's stop words: the retriever's English list plus the question words, auxiliaries
# and particles a question is made of, so only its content words count as shared with a chunk.
STOP = ENGLISH_STOPWORDS | frozenset("""about after also before being can could did do does down here him how just may
might must one out over shall should up very where whom whose why would yes""".split())


@dataclass
class SeedItem:
    id: str
    source: str
    question: str
    candidates: list[str]
    gold: list[int]
    doc_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        if not row["meta"]:
            row.pop("meta")
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "SeedItem":
        try:
            item = cls(id=str(row["id"]), source=str(row.get("source", "")), question=str(row["question"]),
                       candidates=[str(c) for c in row["candidates"]], gold=[int(g) for g in row["gold"]],
                       doc_id=str(row.get("doc_id", "")), meta=dict(row.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"seed row {row.get('id', '?')!r} is malformed: {exc}") from None
        if not item.candidates or any(not 0 <= g < len(item.candidates) for g in item.gold):
            raise InputError(f"seed row {item.id!r}: gold indices must point into a non-empty candidate list")
        return item


def read_rows(path: Path | str, kind: str = "seed") -> list[dict[str, Any]]:
    """The JSON rows of a seed (or training sample) file, with a clear error when it is missing or not JSONL."""
    try:
        return read_jsonl(path)
    except FileNotFoundError:
        raise InputError(f"{kind} file not found: {path}") from None
    except ValueError as exc:
        raise InputError(f"{kind} file {path} is not JSONL: {exc}") from None


def read_seeds(path: Path | str) -> list[SeedItem]:
    items = [SeedItem.from_json(r) for r in read_rows(path)]
    seen = set()
    for it in items:
        if it.id in seen:
            raise InputError(f"seed file {path} repeats id {it.id!r}")
        seen.add(it.id)
    return items


def write_seeds(path: Path | str, items: Iterable[SeedItem]) -> int:
    rows = [it.to_json() for it in items]
    write_jsonl(path, rows)
    return len(rows)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

class TokenBudget:
    """Counts and caps text length in the reranker's tokens (a ``tokenizers.Tokenizer``)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def cap(self, text: str, max_tokens: int) -> str:
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return text
        cut = enc.offsets[max_tokens - 1][1]
        head = text[:cut]
        # Prefer ending on a sentence, else on a word boundary.
        m = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
        if m > len(head) // 2:
            return head[:m + 1]
        space = head.rfind(" ")
        return head[:space] if space > len(head) // 2 else head


def _rng(*key: Any) -> random.Random:
    digest = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def _arrange(item_id: str, candidates: list[str], gold: list[int], n_candidates: Optional[int] = None,
             shuffle: bool = True) -> tuple[list[str], list[int]]:
    """Keep every gold and random negatives up to ``n_candidates``; shuffle (seeded by the item id) or
    keep the given order (retriever order)."""
    keep = list(range(len(candidates)))
    if n_candidates is not None and len(keep) > n_candidates:
        negatives = [i for i in keep if i not in set(gold)]
        _rng("neg", item_id).shuffle(negatives)
        chosen = set(gold) | set(negatives[:max(0, n_candidates - len(gold))])
        keep = [i for i in keep if i in chosen]
    if shuffle:
        _rng("order", item_id).shuffle(keep)
    new_pos = {old: new for new, old in enumerate(keep)}
    return [candidates[i] for i in keep], sorted(new_pos[g] for g in gold if g in new_pos)


def _drop(drops: Optional[dict], reason: str) -> None:
    """Count a question a builder leaves out (``drops``: a dict/Counter the caller passes, or None)."""
    if drops is not None:
        drops[reason] = drops.get(reason, 0) + 1


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class WordBm25:
    """The retriever's BM25 over lowercase ``\\w+`` words of a few chunk texts, in memory."""

    def __init__(self, texts: Sequence[str]):
        self.n = len(texts)
        self.retriever = lucene_bm25([words(t) or ["_"] for t in texts])

    def top(self, query: str, k: int) -> list[int]:
        """The ``k`` best chunks, ties (zero scores included) to the earlier chunk."""
        import numpy as np

        scores = self.retriever.get_scores(words(query))
        order = np.argsort(-scores, kind="stable")
        return [int(i) for i in order[:k]]


def _parse_range(spec: Optional[str], n: int) -> list[int]:
    """ "A-B" (inclusive) or "A" or "A,B,C" -> indices; None -> all."""
    if not spec:
        return list(range(n))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return [i for i in out if 0 <= i < n]


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------
# The dataset loaders are imported inside the builders: ``evaluate`` imports this module (the silver rule's
# stop words and normalisation), so a module-level import would be circular.

def _paragraph_items(source: str, data, budget: TokenBudget, max_tokens: int, select: Optional[str],
                     n_candidates: Optional[int], shuffle: bool, drops: Optional[dict]) -> list[SeedItem]:
    """MuSiQue/HotpotQA: each question (one document of paragraphs per question, in file order) with its
    own paragraphs as candidates, "title\\ntext" even when the title is empty."""
    items = []
    for i in _parse_range(select, len(data.questions)):
        doc, q = data.documents[i], data.questions[i]
        cands = [budget.cap(f"{p.title}\n{p.text}", max_tokens) for p in doc.paragraphs]
        supporting = set(q.evidence.items)
        gold = [k for k, p in enumerate(doc.paragraphs) if p.key in supporting]
        if not gold:
            _drop(drops, "no supporting paragraph")
            continue
        item_id = f"{source}:{q.id}"
        cands, gold = _arrange(item_id, cands, gold, n_candidates, shuffle)
        items.append(SeedItem(item_id, source, q.question, cands, gold, doc_id=q.doc_id))
    return items


def build_musique(path: Path | str, budget: TokenBudget, max_tokens: int = 120, select: Optional[str] = None,
                  n_candidates: Optional[int] = None, shuffle: bool = True,
                  drops: Optional[dict] = None) -> list[SeedItem]:
    """``select`` counts lines of the file, unanswerable questions included (dropped only when, as in
    MuSiQue-Full, no paragraph of theirs is supporting)."""
    from ..evaluate.datasets.musique import load_musique

    data = load_musique(path, keep_unanswerable=True, require_answers=False)
    return _paragraph_items("musique", data, budget, max_tokens, select, n_candidates, shuffle, drops)


def build_hotpotqa(path: Path | str, budget: TokenBudget, max_tokens: int = 120, select: Optional[str] = None,
                   n_candidates: Optional[int] = None, shuffle: bool = True,
                   drops: Optional[dict] = None) -> list[SeedItem]:
    from ..evaluate.datasets.hotpotqa import load_hotpotqa

    data = load_hotpotqa(path, require_answers=False)
    return _paragraph_items("hotpotqa", data, budget, max_tokens, select, n_candidates, shuffle, drops)


def locomo_chunks(conversation: dict[str, Any], budget: TokenBudget, target_tokens: int = 100) -> list[dict]:
    """Pack each session's turns into chunks of about ``target_tokens``; a turn is never split."""
    chunks = []
    n = 1
    while f"session_{n}" in conversation or f"session_{n}_date_time" in conversation:
        turns = conversation.get(f"session_{n}") or []
        date = conversation.get(f"session_{n}_date_time", "")
        header = f"Session {n} ({date}):" if date else f"Session {n}:"
        cur_lines: list[str] = []
        cur_ids: list[str] = []
        cur_tokens = budget.count(header)
        for t in turns:
            line = f"{t['speaker']}: {t['text']}"
            if t.get("blip_caption"):
                line += f" [shares {t['blip_caption']}]"
            cost = budget.count(line) + 1
            if cur_lines and cur_tokens + cost > target_tokens:
                chunks.append({"text": "\n".join([header] + cur_lines), "dia_ids": cur_ids, "session": n})
                cur_lines, cur_ids, cur_tokens = [], [], budget.count(header)
            cur_lines.append(line)
            cur_ids.append(t["dia_id"])
            cur_tokens += cost
        if cur_lines:
            chunks.append({"text": "\n".join([header] + cur_lines), "dia_ids": cur_ids, "session": n})
        n += 1
    return chunks


def build_locomo(path: Path | str, budget: TokenBudget, n_candidates: int = 20, candidates: str = "bm25",
                 select: Optional[str] = None, per_doc: Optional[int] = None, target_tokens: int = 100,
                 max_tokens: int = 160, shuffle: bool = True, drops: Optional[dict] = None) -> list[SeedItem]:
    from ..evaluate.datasets.locomo import ADVERSARIAL, dia_ids, load_locomo

    data = load_locomo(path)
    items = []
    for ci in _parse_range(select, len(data.documents)):
        conv = data.documents[ci]
        chunks = locomo_chunks(conv.transcript["conversation"], budget, target_tokens)
        texts = [budget.cap(c["text"], max_tokens) for c in chunks]
        where = {d: k for k, c in enumerate(chunks) for d in c["dia_ids"]}
        index = WordBm25(texts) if candidates == "bm25" else None
        doc_items = []
        for qa in data.questions_of(conv.id):  # ids "<sample_id>:<position in its qa list>"
            if qa.category == ADVERSARIAL:
                _drop(drops, "adversarial (category 5) or no answer")
                continue
            ids = set(dia_ids(qa.evidence.detail.get("raw", []), as_written=True))
            gold_chunks = sorted({where[d] for d in ids if d in where})
            if not gold_chunks:
                _drop(drops, "evidence turns not found")
                continue
            item_id = f"locomo:{qa.id}"
            if index is not None:
                picked = index.top(qa.question, n_candidates)
            else:
                rest = [k for k in range(len(texts)) if k not in gold_chunks]
                _rng("neg", item_id).shuffle(rest)
                picked = gold_chunks + rest[:max(0, n_candidates - len(gold_chunks))]
            gold = [k for k, c in enumerate(picked) if c in gold_chunks]
            if not gold:
                _drop(drops, "no positive among the candidates")
                continue  # the evidence was not retrieved: nothing to learn from
            cands, gold = _arrange(item_id, [texts[c] for c in picked], gold, shuffle=shuffle)
            doc_items.append(SeedItem(item_id, "locomo", qa.question, cands, gold, doc_id=conv.id,
                                      meta={"category": qa.category}))
        if per_doc is not None:
            _rng("per_doc", conv.id).shuffle(doc_items)
            doc_items = sorted(doc_items[:per_doc], key=lambda it: int(it.id.rsplit(":", 1)[1]))
        items.extend(doc_items)
    return items


def _normalise(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def _story_body(text: str) -> str:
    start = re.search(r"\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n", text, re.I)
    end = re.search(r"\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG", text, re.I)
    a = start.end() if start else 0
    b = end.start() if end and end.start() > a else len(text)
    return text[a:b]


_SENT = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")


def story_target(max_tokens: int) -> int:
    """The packing target of a story chunk under the cap ``max_tokens``: 100 tokens up to a cap of 120 (the
    seeds the shipped heads and adapters were built from); above that a little under the cap, so that with
    ``max_tokens=200`` the chunks have the size of bookqa's own (~200 tokens) and still end at a sentence."""
    return min(100, max_tokens) if max_tokens <= 120 else max(100, max_tokens - 20)


def story_chunks(text: str, budget: TokenBudget, target_tokens: int = 100, max_tokens: int = 120) -> list[str]:
    """Paragraphs packed into ~target-token chunks; long paragraphs split at sentence ends."""
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", _story_body(text)):
        para = " ".join(para.split())
        if not para:
            continue
        if budget.count(para) <= max_tokens:
            pieces.append(para)
        else:
            pieces.extend(s for s in _SENT.split(para) if s.strip())
    chunks: list[str] = []
    cur: list[str] = []
    cur_tokens = 0
    for p in pieces:
        cost = budget.count(p)
        if cur and cur_tokens + cost > target_tokens:
            chunks.append(" ".join(cur))
            cur, cur_tokens = [], 0
        cur.append(p)
        cur_tokens += cost
    if cur:
        chunks.append(" ".join(cur))
    return [budget.cap(c, max_tokens) for c in chunks]


def build_narrativeqa(path: Path | str, budget: TokenBudget, n_candidates: int = 20, select: Optional[str] = None,
                      per_doc: Optional[int] = None, max_tokens: int = 120, shuffle: bool = True,
                      drops: Optional[dict] = None) -> list[SeedItem]:
    """``path``: qaps_dev.jsonl (its ``story_file`` entries are resolved next to it). ``select`` counts the
    documents in id order, those whose story file is missing included (their questions are dropped)."""
    from ..evaluate.datasets.narrativeqa import load_narrativeqa

    data = load_narrativeqa(path)
    documents = {d.id: d for d in data.documents}
    doc_ids = sorted(documents.keys() | data.missing_text.keys())
    items = []
    for di in _parse_range(select, len(doc_ids)):
        doc = doc_ids[di]
        if doc not in documents:
            for _ in range(data.missing_text[doc]):
                _drop(drops, "story file missing")
            continue
        chunks = story_chunks(documents[doc].get_text(), budget, target_tokens=story_target(max_tokens),
                              max_tokens=max_tokens)
        norm = [f" {_normalise(c)} " for c in chunks]
        index = WordBm25(chunks)
        doc_items = []
        for r in data.questions_of(doc):
            answers = {_normalise(a) for a in r.meta.get("answers_as_written", r.answers)}
            answers = {a for a in answers if len(a) >= 2 and not all(w in STOP for w in a.split())}
            hits = [k for k, c in enumerate(norm) if any(f" {a} " in c for a in answers)]
            if not hits:
                _drop(drops, "no silver evidence chunk")
                continue
            qwords = {w for w in words(r.question) if w not in STOP}
            overlap = {k: len(qwords & set(norm[k].split())) for k in hits}
            best = max(overlap.values())
            if best == 0:
                _drop(drops, "no silver evidence chunk")
                continue
            silver = [k for k in hits if overlap[k] == best][:3]
            picked = index.top(r.question, n_candidates)
            gold = [k for k, c in enumerate(picked) if c in silver]
            if not gold:
                _drop(drops, "no positive among the candidates")
                continue
            item_id = f"narrativeqa:{r.id}"
            cands, gold = _arrange(item_id, [chunks[c] for c in picked], gold, shuffle=shuffle)
            doc_items.append(SeedItem(item_id, "narrativeqa", r.question, cands, gold, doc_id=doc))
        if per_doc is not None:
            _rng("per_doc", doc).shuffle(doc_items)
            doc_items = doc_items[:per_doc]
        items.extend(doc_items)
    return items


def build_seeds(dataset: str, path: Path | str, tokenizer, *, select: Optional[str] = None,
                per_doc: Optional[int] = None, limit: Optional[int] = None, negatives: str = "bm25",
                n_candidates: Optional[int] = None, max_tokens: int = 120, shuffle: bool = True,
                drops: Optional[dict] = None) -> list[SeedItem]:
    """Build seed items for ``dataset`` from ``path`` (see the module docstring for each rule).

    ``select``: record range "A-B" (LoCoMo: conversations; NarrativeQA: documents in id order);
    ``per_doc``: at most this many questions per conversation/document; ``n_candidates``: candidates per
    item (MuSiQue/HotpotQA: all gold plus random negatives; LoCoMo/NarrativeQA: retriever top-N, default
    20); ``shuffle=False`` keeps the source (retriever) order. ``drops`` (a dict) counts the questions
    left out, by reason (no gold, evidence not retrieved, ...).
    """
    budget = TokenBudget(tokenizer)
    if dataset == "musique":
        items = build_musique(path, budget, max_tokens, select, n_candidates, shuffle, drops)
    elif dataset == "hotpotqa":
        items = build_hotpotqa(path, budget, max_tokens, select, n_candidates, shuffle, drops)
    elif dataset == "locomo":
        items = build_locomo(path, budget, n_candidates=n_candidates or 20, candidates=negatives, select=select,
                             per_doc=per_doc, target_tokens=min(100, max_tokens), max_tokens=max(max_tokens, 120),
                             shuffle=shuffle, drops=drops)
    elif dataset == "narrativeqa":
        items = build_narrativeqa(path, budget, n_candidates=n_candidates or 20, select=select, per_doc=per_doc,
                                  max_tokens=max_tokens, shuffle=shuffle, drops=drops)
    else:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if limit is not None and len(items) > limit:
        order = list(range(len(items)))
        _rng("limit", dataset, len(items)).shuffle(order)
        keep = set(order[:limit])
        items = [it for i, it in enumerate(items) if i in keep]
    return items

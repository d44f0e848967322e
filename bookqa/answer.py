"""The evidence prompt and citation handling.

Citations are structural: the generator only sees numbered passages whose chunk ids and character
spans are known before generation; after generation every ``[n]`` is parsed, checked against the
passages actually provided, and resolved to a chunk id, its span, and the sentence inside it that best
supports the claim. Numbers that were not provided are dropped and reported; sentences without a
citation are flagged. A small local model cannot break a citation into a wrong span this way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional, Sequence

from .chunk import Chunk
from .text import HAN_IDEOGRAPH

# [1]  [1, 3]  [1,2,3]  [1-3]  【1】  【1，3】  ［2］  — a bracket holding only numbers, commas, dashes.
_CITE = re.compile(r"[\[【［]\s*(\d+(?:\s*(?:[,，、;；]|[-–~～])\s*\d+)*)\s*[\]】］]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"'”’」』)]*\s+|(?<=[。！？])")
# Words whose full stop does not end a sentence ("Dr. Watson"), and single initials ("J. Smith").
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Mme|Mlle|Dr|St|Prof|Rev|Col|Capt|Lt|Gen|Sgt|Sr|Jr|Hon|Gov|"
                           r"vs|etc|e\.g|i\.e|cf|No|Vol|Fig|Mt|Ft)|\b[A-Z])\.$")
_WORD = re.compile(r"\w+", re.UNICODE)


def is_chinese(text: str) -> bool:
    """True when CJK ideographs make up a good share of the letters (the answer should be Chinese)."""
    cjk = len(HAN_IDEOGRAPH.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return cjk > 0 and cjk >= 0.3 * max(letters, 1)


@dataclass
class Evidence:
    """A passage handed to the generator as ``[number]``."""

    number: int
    chunk: Chunk
    score: float  # reranker score (or first-stage score when not reranked)
    rank: int  # rank after reranking, 1 = best
    shown: Optional[str] = None  # what the generator reads when not the whole chunk (focus.py trims it)

    @property
    def text(self) -> str:
        return self.chunk.text if self.shown is None else self.shown


@dataclass
class Citation:
    number: int
    chunk_id: int
    start: int  # the cited chunk's span in the book text
    end: int
    quote_start: int  # the sentence of that chunk that best supports the claim
    quote_end: int
    quote: str
    location: str
    claim: str  # the answer sentence carrying the citation
    inferred: bool = False  # True: the model gave no citation; bookqa attributed the best-supporting passage
    answer_end: int = -1  # end offset, in the answer text, of the sentence that carries the citation
    supported: Optional[bool] = None  # the citation check's verdict (citecheck.py); None: not checked
    support: Optional[float] = None  # the checker's score, 0..1


@dataclass
class ParsedAnswer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    invalid_numbers: list[int] = field(default_factory=list)  # cited but never provided
    uncited_sentences: list[str] = field(default_factory=list)
    uncited_ends: list[int] = field(default_factory=list)  # where each uncited sentence ends in ``text``
    checked_by: str = ""  # the citation checker that set each citation's ``supported`` ("" = none)


EVIDENCE_ORDERS = ("auto", "document", "rank")


def evidence_order_for(order: str, kind: str) -> str:
    """What ``order`` means for a book of ``kind``: ``auto`` is document order for a transcript, where the
    order of the passages is the order of time that its questions ask about (when, before, after), and rank
    order for any other book (novels were answered better with the best passage first, but the citation
    check let more wrong answers pass; so document order stays the default)."""
    if order not in EVIDENCE_ORDERS:
        from .errors import ConfigError

        raise ConfigError(f"evidence_order must be one of {', '.join(EVIDENCE_ORDERS)}, got {order!r}")
    if order != "auto":
        return order
    return "document" if kind == "transcript" else "rank"


def order_evidence(ranked: Sequence[Evidence], order: str = "document") -> list[Evidence]:
    """The chosen passages (best first) renumbered 1..n in ``order``: ``document`` (as they appear in the
    book) or ``rank`` (the reranker's best first); ``auto`` must first be resolved for the book
    (:func:`evidence_order_for`)."""
    if order not in EVIDENCE_ORDERS[1:]:
        from .errors import ConfigError

        raise ConfigError(f"the passages' order must be document or rank, got {order!r}"
                          + (" (resolve auto with evidence_order_for)" if order == "auto" else ""))
    if order == "document":
        return evidence_in_document_order(ranked)
    return [replace(e, number=i) for i, e in enumerate(sorted(ranked, key=lambda e: e.rank), 1)]


def evidence_in_document_order(ranked: Sequence[Evidence]) -> list[Evidence]:
    """Renumber the chosen passages 1..n in the order they appear in the book (DOS-RAG: document
    order helps small generators follow the story)."""
    ordered = sorted(ranked, key=lambda e: e.chunk.start)
    return [replace(e, number=i) for i, e in enumerate(ordered, 1)]


# Answer styles. "prose" writes one to three cited sentences for a reader; "short" writes the answer
# phrase alone, as the evaluation references are written (a name, a date, a few words), still cited.
# Each has one worked example: small local models (0.5B) follow the requested form far more often after
# seeing one, and occasionally copy its citation style. Whatever they write, citations are checked
# afterwards and uncited sentences are attributed to their best-supporting passage (``attribute_uncited``).
ANSWER_STYLES = ("prose", "short")
SHORT_MAX_TOKENS = 48  # a short answer is a phrase; more tokens only let a small model ramble on
REFUSALS = {"prose": {"en": "The passages do not say.", "zh": "段落中没有提到。"},
            "short": {"en": "Not mentioned in the passages.", "zh": "段落中没有提到。"}}
_REFUSAL = re.compile(r"(passages?|text|context)\s+(do|does)\s+not\s+(say|mention|state)|not\s+mentioned|"
                      r"no\s+information\s+(is\s+)?available|段落中没有提到|没有提到", re.I)

_SYSTEM = {
    ("prose", "en"): ("You answer questions about a book using only the numbered passages you are given. Write a "
                      "short answer of one to three sentences. End every sentence with the number of the passage "
                      "that supports it, in square brackets. If the passages do not say, answer "
                      f"\"{REFUSALS['prose']['en']}\""),
    ("short", "en"): ("You answer questions about a book using only the numbered passages you are given. Reply "
                      "with the answer alone: a short phrase of one to ten words (a name, a place, a date, a "
                      "number, a short description), not a sentence, followed by the number of the passage that "
                      f"holds it in square brackets. If the passages do not say, reply \"{REFUSALS['short']['en']}\""),
    ("prose", "zh"): ("你根据给出的编号段落回答关于一本书的问题，只能使用这些段落。用一到三句话简洁回答，每句话末尾用方括号标注"
                      f"所依据的段落编号。如果段落中没有答案，请回答“{REFUSALS['prose']['zh']}”请用中文回答。"),
    ("short", "zh"): ("你根据给出的编号段落回答关于一本书的问题，只能使用这些段落。只写答案本身：一个简短的词语（人名、地点、"
                      "日期、数字或简短描述），不要写完整的句子，后面用方括号标注所依据的段落编号。如果段落中没有答案，请回答"
                      f"“{REFUSALS['short']['zh']}”请用中文回答。"),
}
_SHOT_QUESTION = {
    "en": ("Passages from \"Example\":\n\n[1] (chunk 4)\nThe mayor locked the ledger in the iron safe and kept "
           "the key on his watch chain.\n\n[2] (chunk 9)\nAt dawn the clerk, Tom Reed, opened the safe with a "
           "copied key and took the ledger to the newspaper.\n\nQuestion: Who took the ledger to the newspaper?"),
    "zh": ("《示例》中的段落：\n\n[1]（第4块）\n镇长把账本锁进铁柜，钥匙挂在怀表链上。\n\n[2]（第9块）\n天亮时，"
           "文书李明用配好的钥匙打开铁柜，把账本送到了报社。\n\n问题：谁把账本送到了报社？"),
}
_SHOT_ANSWER = {
    ("prose", "en"): "Tom Reed, the clerk, took the ledger to the newspaper [2]. He had opened the safe with a copied key [2].",
    ("short", "en"): "Tom Reed, the clerk [2]",
    ("prose", "zh"): "文书李明把账本送到了报社[2]。他是用配好的钥匙打开铁柜的[2]。",
    ("short", "zh"): "文书李明[2]",
}
# The optional second example asks what the same passages do not hold, and answers with the style's
# refusal: without it a small model answers every question from whatever it was given.
_REFUSAL_SHOT_QUESTION = {"en": "Question: What colour was the mayor's watch chain?", "zh": "问题：镇长的怀表链是什么颜色的？"}


def check_style(style: str) -> str:
    if style not in ANSWER_STYLES:
        from .errors import ConfigError

        raise ConfigError(f"answer_style must be {' or '.join(ANSWER_STYLES)}, got {style!r}")
    return style


def is_refusal(text: str) -> bool:
    """True when an answer says the passages do not hold it (either style's sentence, or a paraphrase)."""
    return bool(_REFUSAL.search(text or ""))


def backed_by(text: str, checked: bool, supported: Iterable[Optional[bool]]) -> Optional[bool]:
    """Whether a checked answer rests on the passages: at least one of its citations (their ``supported``
    verdicts) passed the check. None when nothing was checked, or for a refusal, which claims nothing. An
    answer no passage backs is the usual sign that the passages do not hold the answer and the generator
    wrote one anyway."""
    if not checked or not text or is_refusal(text):
        return None
    return any(supported)


def answer_tokens(style: str, max_tokens: int) -> int:
    """The generation budget of a style: a short answer never needs the prose budget."""
    return min(max_tokens, SHORT_MAX_TOKENS) if style == "short" else max_tokens


def build_messages(question: str, evidence: Sequence[Evidence], title: str = "",
                   prefix: str = "", style: str = "prose", refusal_example: bool = False) -> list[dict[str, str]]:
    """Chat messages asking for an answer in ``style`` with ``[n]`` after every claim, in the question's
    language; ``refusal_example`` adds a worked example of a question the passages do not answer."""
    lang = "zh" if is_chinese(question) else "en"
    check_style(style)
    blocks = []
    for e in evidence:
        where = e.chunk.chapter or f"chunk {e.chunk.id}"
        blocks.append(f"[{e.number}] ({where})\n{e.text.strip()}")
    passages = "\n\n".join(blocks)
    if lang == "zh":
        user = (f"背景摘要：\n{prefix}\n\n" if prefix else "") + \
            f"《{title or '本书'}》中的段落：\n\n{passages}\n\n问题：{question}"
    else:
        user = (f"Background summary:\n{prefix}\n\n" if prefix else "") + \
            f"Passages from \"{title or 'the book'}\":\n\n{passages}\n\nQuestion: {question}"
    shots = [{"role": "user", "content": _SHOT_QUESTION[lang]}, {"role": "assistant", "content": _SHOT_ANSWER[style, lang]}]
    if refusal_example:
        shots += [{"role": "user", "content": _REFUSAL_SHOT_QUESTION[lang]},
                  {"role": "assistant", "content": REFUSALS[style][lang]}]
    return [{"role": "system", "content": _SYSTEM[style, lang]}, *shots, {"role": "user", "content": user}]


def parse_numbers(inner: str) -> list[int]:
    """'1, 3' -> [1, 3]; '2-4' -> [2, 3, 4]; '1，2' -> [1, 2]. Ranges are capped to stay sane."""
    out: list[int] = []
    for part in re.split(r"\s*[,，、;；]\s*", inner.strip()):
        m = re.fullmatch(r"(\d+)\s*[-–~～]\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a <= b and b - a <= 20:
                out.extend(range(a, b + 1))
            else:
                out.extend([a, b])
        elif part.isdigit():
            out.append(int(part))
    return out


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an answer (light rules; answers are short). Citations that follow the full
    stop (``... Paris. [1]``) belong to the sentence before them."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start()
        if _ABBREVIATION.search(text[max(start, end - 8):end]):
            continue
        # keep trailing citation brackets with this sentence
        tail = re.match(r"(\s*[\[【［][\d\s,，、;；\-–~～]+[\]】］])+", text[m.start():])
        if tail:
            end = m.start() + tail.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    merged: list[tuple[int, int]] = []
    for s, e in spans:  # a piece that is only citations joins the previous sentence
        if merged and not _CITE.sub("", text[s:e]).strip():
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _best_sentence(chunk: Chunk, claim: str) -> tuple[int, int]:
    """The span (book offsets) of the chunk sentence sharing most words with the claim."""
    claim_words = {w.lower() for w in _WORD.findall(_CITE.sub(" ", claim)) if len(w) > 2 or HAN_IDEOGRAPH.match(w)}
    if is_chinese(claim):
        claim_words |= set(HAN_IDEOGRAPH.findall(claim))
    best, best_score = (chunk.start, chunk.end), 0.0
    for s, e in split_sentences(chunk.text):
        piece = chunk.text[s:e]
        words = {w.lower() for w in _WORD.findall(piece)} | set(HAN_IDEOGRAPH.findall(piece))
        score = len(words & claim_words) / (1 + len(words) ** 0.5)
        if score > best_score:
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            best, best_score = (chunk.start + s + lead, chunk.start + e - trail), score
    return best


def cite(ev: Evidence, claim: str, answer_end: int, inferred: bool = False) -> Citation:
    """A citation of passage ``ev`` for ``claim``, quoting the chunk sentence that best matches it."""
    qs, qe = _best_sentence(ev.chunk, claim)
    return Citation(number=ev.number, chunk_id=ev.chunk.id, start=ev.chunk.start, end=ev.chunk.end,
                    quote_start=qs, quote_end=qe, quote=ev.chunk.text[qs - ev.chunk.start:qe - ev.chunk.start],
                    location=ev.chunk.location, claim=claim, inferred=inferred, answer_end=answer_end)


def parse_citations(answer: str, evidence: Sequence[Evidence], min_words: int = 3) -> ParsedAnswer:
    """Resolve every ``[n]`` in ``answer`` against the passages that were provided. An uncited sentence
    of at least ``min_words`` words is listed as uncited (a short answer's phrase counts from one word)."""
    by_number = {e.number: e for e in evidence}
    result = ParsedAnswer(text=answer)
    seen: set[tuple[int, str]] = set()
    for s, e in split_sentences(answer):
        sentence = answer[s:e]
        numbers = [n for m in _CITE.finditer(sentence) for n in parse_numbers(m.group(1))]
        claim = re.sub(r"\s+([.!?,;:。！？，；])", r"\1", _CITE.sub("", sentence)).strip()
        if not numbers:
            if claim and len(_WORD.findall(claim)) >= min_words and not is_refusal(claim):
                result.uncited_sentences.append(claim)
                result.uncited_ends.append(s + len(sentence.rstrip()))
            continue
        for n in numbers:
            ev = by_number.get(n)
            if ev is None:
                if n not in result.invalid_numbers:
                    result.invalid_numbers.append(n)
                continue
            if (n, claim) in seen:
                continue
            seen.add((n, claim))
            result.citations.append(cite(ev, claim, answer_end=s + len(sentence.rstrip())))
    return result


def _support(chunk: Chunk, claim: str) -> float:
    """How many of the claim's content words (or CJK characters) the passage contains, as a share."""
    words = {w.lower() for w in _WORD.findall(claim) if len(w) > 3} | set(HAN_IDEOGRAPH.findall(claim))
    if not words:
        return 0.0
    text = chunk.text.lower()
    return sum(1 for w in words if w in text) / len(words)


def attribute_uncited(parsed: ParsedAnswer, evidence: Sequence[Evidence], min_support: float = 0.5) -> ParsedAnswer:
    """Give each uncited sentence an ``inferred`` citation to the passage that best supports it, when
    at least ``min_support`` of its content words occur there. Uncited sentences stay listed."""
    for claim, end in zip(parsed.uncited_sentences, parsed.uncited_ends):
        scored = sorted(((_support(e.chunk, claim), e.number, e) for e in evidence), key=lambda t: (-t[0], t[1]))
        if not scored or scored[0][0] < min_support:
            continue
        parsed.citations.append(cite(scored[0][2], claim, answer_end=end, inferred=True))
    return parsed


def annotate(answer: str, citations: Sequence[Citation]) -> str:
    """The answer with inferred citations written in as ``[n]`` after their sentence, for display."""
    inserts = sorted(((c.answer_end, c.number) for c in citations if c.inferred and c.answer_end >= 0), reverse=True)
    out = answer
    for end, number in inserts:
        out = out[:end] + f" [{number}]" + out[end:]
    return out

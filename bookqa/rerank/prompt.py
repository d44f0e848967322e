"""The reranking prompt and the exact token spans of its parts.

Layout (the QRRanker paper's prompt), inside the model's chat turn when it has one::

    {instruction}

    Here are some summaries that may help answer the query:     (only with a summary prefix)
    {prefix}

    Here are some retrieved chunks:

    [1] {chunk 1}

    [2] {chunk 2}
    ...

    {late instruction}

    Query: {question}

The question comes last so every question token can attend to every candidate. Token spans come from
the tokenizer's offset mapping of the *whole* rendered prompt (never from tokenizing pieces: BPE
merges across piece boundaries would shift them).

Question span (``question_span``):

- ``"question"`` (default): the question's own tokens. Measured on the name-anchored check with the
  embedded Qwen2.5-Coder-0.5B and its shipped heads, see docs/heads-qwen2.5-coder-0.5b.md.
- ``"query"``: QRHead's convention, everything after the last candidate: late instruction, "Query:",
  the question and the chat suffix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import ConfigError

QUESTION_SPANS = ("question", "query")
CHAT_MODES = ("auto", "template", "chatml", "none")
_SENTINEL = "\u2063BOOKQA_PROMPT_BODY\u2063"


@dataclass(frozen=True)
class PromptLayout:
    instruction: str = "Find the retrieved chunks that answer the query."
    prefix_intro: str = "Here are some summaries that may help answer the query:"
    chunks_intro: str = "Here are some retrieved chunks:"
    marker: str = "[{i}] "  # candidate number, 1-based
    separator: str = "\n\n"
    late_instruction: str = "Use the retrieved chunks to answer the user's query."
    query_label: str = "Query: "
    # auto: the tokenizer's chat template when it has one, else plain text; template: require it;
    # chatml: literal <|im_start|>user ... <|im_end|>\n<|im_start|>assistant\n; none: plain text.
    chat: str = "auto"
    question_span: str = "question"  # question | query (see module docstring)

    def __post_init__(self):
        if self.question_span not in QUESTION_SPANS:
            raise ConfigError(f"question_span must be one of {', '.join(QUESTION_SPANS)}, got {self.question_span!r}")
        if self.chat not in CHAT_MODES:
            raise ConfigError(f"chat must be one of {', '.join(CHAT_MODES)}, got {self.chat!r}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class BuiltPrompt:
    text: str
    input_ids: list[int]
    question: tuple[int, int]  # token range [start, end) of the layout's question span
    spans: dict[str, tuple[int, int]]  # both conventions: "question" and "query" token ranges
    candidates: list[tuple[int, int]]  # token range of each candidate's text
    prefix: Optional[tuple[int, int]]  # token range of the summary prefix text
    question_chars: tuple[int, int]
    candidate_chars: list[tuple[int, int]]
    offsets: Optional[np.ndarray] = None  # (n_tokens, 2) character range of each token in ``text``

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def segment_map(self, length: Optional[int] = None) -> np.ndarray:
        """Candidate index per token position (-1 outside every candidate)."""
        seg = np.full(length or self.n_tokens, -1, dtype=np.int64)
        for i, (a, b) in enumerate(self.candidates):
            seg[a:b] = i
        return seg


def _chat_wrap(tokenizer, chat: str) -> tuple[str, str, bool]:
    """(header, footer, add_special_tokens) around the user message."""
    template = getattr(tokenizer, "chat_template", None)
    if chat == "chatml" or (chat in ("auto", "template") and template):
        if chat != "chatml":
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}],
                                                     tokenize=False, add_generation_prompt=True)
            if not isinstance(rendered, str) or rendered.count(_SENTINEL) != 1:
                raise ConfigError("the tokenizer's chat template did not render the user message once")
            header, footer = rendered.split(_SENTINEL)
            # The rendered template already holds any BOS text; do not add special tokens again.
            return header, footer, False
        return "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", False
    if chat == "template":
        raise ConfigError("chat='template' but the tokenizer has no chat template")
    return "", "", True


def _char_to_token_span(starts: np.ndarray, ends: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """Tokens whose characters overlap [a, b). Special tokens (empty offsets) never match."""
    if b <= a:
        return (0, 0)
    hit = np.nonzero((starts < b) & (ends > a) & (ends > starts))[0]
    if hit.size == 0:
        return (0, 0)
    return int(hit[0]), int(hit[-1]) + 1


def build_prompt(tokenizer, question: str, candidates: Sequence[str], prefix: Optional[str] = None,
                 layout: PromptLayout = PromptLayout()) -> BuiltPrompt:
    """Render the prompt and find the token span of the question, each candidate and the prefix."""
    header, footer, add_special = _chat_wrap(tokenizer, layout.chat)
    sep = layout.separator
    parts: list[str] = [header]
    pos = len(header)

    def add(text: str) -> tuple[int, int]:
        nonlocal pos
        parts.append(text)
        span = (pos, pos + len(text))
        pos += len(text)
        return span

    if layout.instruction:
        add(layout.instruction + sep)
    prefix_chars = None
    if prefix:
        add(layout.prefix_intro + "\n")
        prefix_chars = add(prefix)
        add(sep)
    add(layout.chunks_intro + sep)
    cand_chars = []
    for i, text in enumerate(candidates):
        add(layout.marker.format(i=i + 1))
        cand_chars.append(add(text))
        add(sep)
    tail_start = pos
    add(layout.late_instruction + sep + layout.query_label)
    question_chars = add(question)
    add(footer)
    text = "".join(parts)

    enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    cand_tokens = [_char_to_token_span(starts, ends, a, b) for a, b in cand_chars]
    spans = {"query": (_char_to_token_span(starts, ends, tail_start, tail_start + 1)[0], len(enc["input_ids"])),
             "question": _char_to_token_span(starts, ends, *question_chars)}
    for name, (a, b) in spans.items():
        # A token straddling the last candidate's end and what follows belongs to the candidate.
        if cand_tokens and cand_tokens[-1][1] > a:
            spans[name] = (cand_tokens[-1][1], b)
        if spans[name][1] <= spans[name][0]:
            raise ConfigError("the question is empty after tokenisation")
    prefix_tokens = _char_to_token_span(starts, ends, *prefix_chars) if prefix_chars else None
    return BuiltPrompt(text=text, input_ids=list(enc["input_ids"]), question=spans[layout.question_span],
                       spans=spans, candidates=cand_tokens, prefix=prefix_tokens, question_chars=question_chars,
                       candidate_chars=cand_chars, offsets=offsets)

"""The cached-chunk prompt: the reranking prompt cut into blocks that are tokenised and encoded apart.

The full prompt (prompt.py) is one token sequence in which every candidate attends to the candidates
before it, so its keys and values hold only for that candidate list. The cached layout keeps the same
text but makes every block independent of the others::

    shared prefix   {chat header}{instruction}\\n\\n{chunks intro}\\n\\n           positions 0 .. p-1
    chunk block     {chunk text}\\n\\n   (one per chunk, each alone)             positions p .. p+n-1
    question block  {late instruction}\\n\\n{query label}{question}{chat footer}  positions q .. q+m-1

A chunk block sees the shared prefix and itself, never the question or another chunk, and every chunk
starts at position p: its keys and values are the same in every question, so they are computed once and
stored (kvstore.py). The question block sees the prefix, every candidate's block and itself. It starts at
``q = p + block_positions``, one position past the longest of the candidates' blocks, so the question
stands right after every candidate, as the last candidate stands before the question in the full prompt.
With one candidate the layout is the full prompt's token sequence at consecutive positions.

Chunk blocks carry no ``[n]`` marker: a number would be the same in every block (all sit at one position
range) and say nothing. The summary prefix of the full prompt depends on the candidates, so it has no
place in a shared prefix; cached ranking runs without it.

Each block is tokenised on its own (the full prompt tokenises the whole text once): a BPE merge across a
block boundary cannot happen here, which is what lets a block be encoded once for every question.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .prompt import PromptLayout, _char_to_token_span, _chat_wrap

# Bumped whenever the text of a block changes, so stored keys and values of the old form are never read.
BLOCK_FORMAT = 1


@dataclass(frozen=True)
class QuestionBlock:
    input_ids: list[int]
    question: tuple[int, int]  # token range of the layout's question span within the block
    spans: dict[str, tuple[int, int]]  # "question" and "query" token ranges within the block


@dataclass(frozen=True)
class ChunkBlock:
    input_ids: list[int]
    text_tokens: tuple[int, int]  # token range of the chunk's own text (the separator after it excluded)


def shared_prefix_text(tokenizer, layout: PromptLayout) -> tuple[str, bool]:
    """The text every block sees first, and whether the tokenizer adds its special tokens to it."""
    header, _, add_special = _chat_wrap(tokenizer, layout.chat)
    text = header
    if layout.instruction:
        text += layout.instruction + layout.separator
    text += layout.chunks_intro + layout.separator
    return text, add_special


def prefix_ids(tokenizer, layout: PromptLayout) -> list[int]:
    text, add_special = shared_prefix_text(tokenizer, layout)
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    eos = getattr(tokenizer, "eos_token_id", None)
    if add_special and eos is not None and len(ids) > 1 and ids[-1] == eos:
        ids = ids[:-1]  # a tokenizer that closes every text with EOS: the prefix continues
    return list(ids)


def chunk_block(tokenizer, text: str, layout: PromptLayout) -> ChunkBlock:
    if not text:
        raise ConfigError("an empty chunk has no block to encode")
    enc = tokenizer(text + layout.separator, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    span = _char_to_token_span(offsets[:, 0], offsets[:, 1], 0, len(text))
    if span[1] <= span[0]:
        raise ConfigError("a chunk is empty after tokenisation")
    return ChunkBlock(input_ids=list(enc["input_ids"]), text_tokens=span)


def question_block(tokenizer, question: str, layout: PromptLayout) -> QuestionBlock:
    _, footer, _ = _chat_wrap(tokenizer, layout.chat)
    head = layout.late_instruction + layout.separator + layout.query_label
    text = head + question + footer
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    ids = list(enc["input_ids"])
    q_span = _char_to_token_span(offsets[:, 0], offsets[:, 1], len(head), len(head) + len(question))
    if q_span[1] <= q_span[0]:
        raise ConfigError("the question is empty after tokenisation")
    spans = {"question": q_span, "query": (0, len(ids))}
    return QuestionBlock(input_ids=ids, question=spans[layout.question_span], spans=spans)


@dataclass
class BlockSequence:
    """The cached layout as one token sequence: what the question pass over stored chunks computes, run
    in a single forward under a block mask (training runs it so, with gradients; the tests check the cached
    pass against it). Offers what a ``BuiltPrompt`` offers the scorers, plus the positions and the mask."""

    input_ids: list[int]
    question: tuple[int, int]  # token range of the question span
    candidates: list[tuple[int, int]]  # token range of each candidate's text
    position_ids: list[int]
    block_of: list[int]  # per token: -1 shared prefix, i candidate i's block, -2 the question block

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def segment_map(self, length=None) -> np.ndarray:
        seg = np.full(length or self.n_tokens, -1, dtype=np.int64)
        for i, (a, b) in enumerate(self.candidates):
            seg[a:b] = i
        return seg

    def attention_mask(self):
        """(1, 1, N, N) boolean, True = attend: causal, and a chunk block sees only the prefix and itself."""
        import torch

        block = torch.tensor(self.block_of)
        n = block.numel()
        causal = torch.ones(n, n, dtype=torch.bool).tril_()
        sees = (block[None, :] == -1) | (block[:, None] == block[None, :]) | (block[:, None] == -2)
        return (causal & sees)[None, None]


def block_sequence(tokenizer, question: str, candidates, layout: PromptLayout) -> BlockSequence:
    """[prefix][chunk blocks at one shared position range][question block after the longest of them]."""
    ids = prefix_ids(tokenizer, layout)
    p = len(ids)
    positions, block_of = list(range(p)), [-1] * p
    spans, longest = [], 0
    for i, text in enumerate(candidates):
        block = chunk_block(tokenizer, text, layout)
        spans.append((len(ids) + block.text_tokens[0], len(ids) + block.text_tokens[1]))
        n = len(block.input_ids)
        ids += block.input_ids
        positions += list(range(p, p + n))
        block_of += [i] * n
        longest = max(longest, n)
    q = question_block(tokenizer, question, layout)
    base = len(ids)
    ids += q.input_ids
    positions += list(range(p + longest, p + longest + len(q.input_ids)))
    block_of += [-2] * len(q.input_ids)
    return BlockSequence(input_ids=ids, question=(base + q.question[0], base + q.question[1]), candidates=spans,
                         position_ids=positions, block_of=block_of)

"""Prefix selection: greedy coverage of the candidate chunks within a token budget."""
from __future__ import annotations

import random

import pytest

from summarizer import Node, Summarizer, Tree, select_prefix
from summarizer.tree import build_shape, level0_ranges


def words(text: str) -> int:
    return len(text.split())


def tree_with_texts(n_chunks: int, block: int = 20, fanin: int = 20, length: int = 30) -> Tree:
    spans = [(i * 100, i * 100 + 90) for i in range(n_chunks)]
    tree = build_shape(spans, level0_ranges(n_chunks, block), fanin)
    for node in tree.nodes():
        node.text = " ".join([f"{node.id}"] + ["word"] * (length - 1))
        node.status = "ok"
    return tree


def test_budget_is_never_exceeded():
    rng = random.Random(0)
    tree = tree_with_texts(401, length=0)
    for node in tree.nodes():  # summaries of different lengths
        node.text = " ".join([node.id] + ["w"] * rng.randint(5, 150))
    for _ in range(200):
        cands = rng.sample(range(401), rng.randint(1, 50))
        budget = rng.randint(0, 600)
        prefix = select_prefix(tree, cands, words, budget=budget)
        assert prefix.tokens == words(prefix.text) <= budget
        assert len(prefix.used) == len(set(prefix.used))
        # whole summaries only: every used node's full text is in the prefix
        for node_id in prefix.used:
            assert tree.node(node_id).text in prefix.text


def test_greedy_by_coverage_in_narrative_order():
    tree = tree_with_texts(100)  # 5 blocks of 20 chunks, 30 words each
    cands = [85, 86, 87, 88, 5, 6, 7, 45]
    prefix = select_prefix(tree, cands, words, budget=60)
    # block 4 (4 candidates) and block 0 (3) fit; block 2 (1) does not; output in narrative order
    assert prefix.used == ["L0-0", "L0-4"]
    assert prefix.text.index("L0-0") < prefix.text.index("L0-4")
    assert prefix.tokens == 60


def test_higher_level_only_when_it_adds_coverage():
    tree = tree_with_texts(100)
    cands = [1, 2, 25]
    prefix = select_prefix(tree, cands, words, budget=1000)
    assert prefix.used == ["L0-0", "L0-1"]  # blocks cover everything: no root
    # with room for only one summary, the blocks cannot cover both, so the root adds coverage
    tree.root.text = " ".join(["root"] * 20)
    small = select_prefix(tree, cands, words, budget=50)
    assert small.used == ["L1-0", "L0-0"]  # the overview before the block it starts with
    assert small.tokens <= 50


def test_events_cover_their_evidence_chunks():
    spans = [(i * 10, i * 10 + 9) for i in range(6)]
    tree = build_shape(spans, [(0, 3), (3, 6)], fanin=20, sessions=[1, 2])
    s1, s2 = tree.levels[0]
    s1.events = [{"summary": "Alice adopted a cat.", "chunk_ids": [0]},
                 {"summary": "Alice moved to Paris.", "chunk_ids": [2]}]
    s2.events = [{"summary": "Bob got a new job.", "chunk_ids": [4, 5]}]
    s1.text = "Alice adopted a cat. Alice moved to Paris."
    s2.text = "Bob got a new job."
    tree.root.text = "A whole conversation about Alice and Bob."
    prefix = select_prefix(tree, [2, 4, 5], words, budget=100)
    assert prefix.used == ["L0-0/e2", "L0-1/e1"]
    assert prefix.text == "Alice moved to Paris.\nBob got a new job."


def test_empty_inputs():
    assert select_prefix(None, [1, 2], words).text == ""
    assert select_prefix(Tree(), [1], words).used == []
    assert select_prefix(tree_with_texts(10), [], words).used == []


def test_prefix_over_a_built_tree():
    def complete(prompt, max_tokens):
        return f"Summary {len(prompt)} of Esther and Ada walking through London in the fog together."

    src = [(f"Chunk {i}. Esther and Ada walked.", i * 50, i * 50 + 40) for i in range(200)]
    tree = Summarizer(complete, words).summarize(src)
    prefix = select_prefix(tree, [3, 4, 150, 151, 152], words, budget=512)
    assert prefix.used == ["L0-0", "L0-7"]
    with pytest.raises(KeyError):
        tree.node("nope")
    assert isinstance(tree.node("L0-7"), Node)

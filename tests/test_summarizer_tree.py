"""Tree shapes and coverage of the summary tree, built with a deterministic fake completion callable."""
from __future__ import annotations

import hashlib

import pytest

from summarizer import Summarizer, Tree, plan_blocks


def fake_complete(calls: list):
    def complete(prompt: str, max_tokens: int) -> str:
        calls.append(prompt)
        tag = hashlib.sha1(prompt.encode()).hexdigest()[:6]
        return (f"Holmes visited Watson at Baker Street on day {tag}. They argued about the illness, "
                "and the doctor finally agreed to fetch Culverton Smith.")
    return complete


def words(text: str) -> int:
    return len(text.split())


def pieces(n: int) -> list[tuple[str, int, int]]:
    out, pos = [], 0
    for i in range(n):
        text = f"Passage {i}. Holmes lay ill while Watson waited by the fire and listened."
        out.append((text, pos, pos + len(text)))
        pos += len(text) + 2
    return out


@pytest.mark.parametrize("n, level_sizes, calls", [
    (0, [], 0), (1, [1], 1), (19, [1], 1), (20, [1], 1), (21, [2, 1], 3), (401, [21, 2, 1], 24),
])
def test_shapes(n, level_sizes, calls):
    made: list[str] = []
    tree = Summarizer(fake_complete(made), words).summarize(pieces(n))
    assert [len(level) for level in tree.levels] == level_sizes
    assert len(made) == calls
    if n == 0:
        assert tree.root is None and tree.n_chunks == 0
    else:
        assert tree.root is tree.levels[-1][0]
        assert (tree.root.start, tree.root.end) == (0, n)
        # a single node is its own root, at level 0
        if level_sizes == [1]:
            assert tree.root.level == 0 and tree.root.children == []
    for node in tree.nodes():
        assert node.status == "ok" and node.text


@pytest.mark.parametrize("n", [1, 20, 21, 57, 401])
def test_each_level_covers_every_chunk_once(n):
    src = pieces(n)
    tree = Summarizer(fake_complete([]), words).summarize(src)
    for level in tree.levels:
        covered = [c for node in level for c in node.chunk_ids]
        assert covered == list(range(n))
        for node in level:
            assert node.char_start == src[node.start][1] and node.char_end == src[node.end - 1][2]
    # every summary expands to its source chunks through its children
    by_id = {node.id: node for node in tree.nodes()}
    for node in tree.nodes():
        if node.children:
            kids = [by_id[c] for c in node.children]
            assert kids[0].start == node.start and kids[-1].end == node.end
            assert all(a.end == b.start for a, b in zip(kids, kids[1:]))
            assert all(k.level == node.level - 1 for k in kids)


def test_block_and_fanin_settings():
    tree = Summarizer(fake_complete([]), words, block=3, fanin=2).summarize(pieces(10))
    assert [len(level) for level in tree.levels] == [4, 2, 1]
    assert [(n.start, n.end) for n in tree.levels[0]] == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_json_round_trip():
    tree = Summarizer(fake_complete([]), words).summarize(pieces(45))
    data = tree.to_json()
    again = Tree.from_json(data)
    assert again.to_json() == data
    assert data["root"] == "L1-0" and data["mode"] == "llm" and data["block"] == 20
    assert [n.id for n in again.levels[0]] == ["L0-0", "L0-1", "L0-2"]


def test_plan_blocks_matches_summarizer_shape():
    spans = [(p[1], p[2]) for p in pieces(401)]
    assert [len(level) for level in plan_blocks(spans).levels] == [21, 2, 1]


def test_block_prompt_names_its_part():
    made: list[str] = []
    Summarizer(fake_complete(made), words).summarize(pieces(41))
    assert "Part 1 / 3" in made[0] and "Part 3 / 3" in made[2]
    assert "Passage 0." in made[0] and "Passage 40." in made[2]
    assert "50 to 100 words" in made[0] and "third person" in made[0]
    assert "Project Gutenberg" in made[0]  # told to ignore the boilerplate
    assert "whole book" in made[3]

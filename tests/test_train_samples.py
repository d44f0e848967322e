"""Training samples: built by the seed builders in retriever order, drops counted, split by document,
summary prefixes, fitting to the trainer's candidate count and token cap."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bookqa.errors import InputError
from bookqa.lab.detection.seeds import SeedItem, TokenBudget, build_seeds, read_seeds, write_seeds
from bookqa.lab.train.samples import (TrainSample, build_samples, fit_sample, read_samples, split_of,
                                  write_samples)
from test_rerank_tiny import tiny_tokenizer

FIX = Path(__file__).parent / "fixtures" / "eval"


def _tok():
    return tiny_tokenizer().backend_tokenizer


def test_samples_keep_retriever_order_and_count_drops():
    samples, report = build_samples("locomo", FIX / "locomo" / "locomo_mini.json", _tok(), n_candidates=5,
                                    max_tokens=40)
    seeds = build_seeds("locomo", FIX / "locomo" / "locomo_mini.json", _tok(), n_candidates=5, max_tokens=40,
                        shuffle=False)
    assert [(s.id, s.candidates, s.gold) for s in samples] == [(it.id, it.candidates, it.gold) for it in seeds]
    assert report.kept == len(samples) > 0 and all(s.gold for s in samples)
    assert report.dropped == {"adversarial (category 5) or no answer": 1}
    _, nqa = build_samples("narrativeqa", FIX / "narrativeqa_jsonl" / "qaps_dev.jsonl", _tok(), n_candidates=5,
                           max_tokens=40)
    assert nqa.dropped == {"no silver evidence chunk": 1} and nqa.kept == 2


def test_split_is_by_document_and_deterministic():
    assert split_of("narrativeqa", "doc1", 0.0) == "train" and split_of("narrativeqa", "doc1", 0.9999999) == "val"
    docs = [f"d{i}" for i in range(400)]
    val = {d for d in docs if split_of("x", d, 0.25) == "val"}
    assert 60 < len(val) < 140  # about a quarter
    assert val == {d for d in reversed(docs) if split_of("x", d, 0.25) == "val"}  # order-independent
    assert val <= {d for d in docs if split_of("x", d, 0.5) == "val"}  # a bigger share only adds documents
    samples, report = build_samples("musique", FIX / "musique" / "musique_mini.jsonl", _tok(), val_frac=0.5)
    for s in samples:
        assert s.split == split_of("musique", s.doc_id, 0.5)
    assert report.splits["train"] + report.splits["val"] == len(samples)


def test_summary_prefix_covers_the_candidates():
    samples, report = build_samples("narrativeqa", FIX / "narrativeqa_jsonl" / "qaps_dev.jsonl", _tok(),
                                    n_candidates=5, max_tokens=40, prefix=True, prefix_tokens=300, summary_block=3)
    assert report.with_prefix == len(samples) > 0
    budget = TokenBudget(_tok())
    for s in samples:
        assert 0 < budget.count(s.prefix) <= 300
        assert "Gutenberg" not in s.prefix
    loc, _ = build_samples("locomo", FIX / "locomo" / "locomo_mini.json", _tok(), n_candidates=5, max_tokens=40,
                           prefix=True, prefix_tokens=300, summary_block=3)
    assert all(s.prefix for s in loc)
    with pytest.raises(InputError):
        build_samples("musique", FIX / "musique" / "musique_mini.jsonl", _tok(), prefix=True)


def test_sample_files_are_seed_files_and_back(tmp_path):
    s = TrainSample("a", "x", "q?", ["c1", "c2", "c3"], [1], "d", prefix="Summary.", split="val")
    write_samples(tmp_path / "s.jsonl", [s])
    assert read_samples([tmp_path / "s.jsonl"], 0.1) == [s]
    (seed,) = read_seeds(tmp_path / "s.jsonl")  # bookqa heads eval reads sample files
    assert (seed.question, seed.candidates, seed.gold) == ("q?", ["c1", "c2", "c3"], [1])
    write_seeds(tmp_path / "seed.jsonl", [SeedItem("b", "y", "q?", ["c1", "c2"], [0], "doc9")])
    (from_seed,) = read_samples([tmp_path / "seed.jsonl"], 0.3)  # and seed files train
    assert from_seed.split == split_of("y", "doc9", 0.3) and from_seed.prefix is None
    with pytest.raises(InputError, match="twice"):
        read_samples([tmp_path / "s.jsonl", tmp_path / "s.jsonl"], 0.1)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "c", "question": "q", "candidates": ["x"], "gold": [0],
                                                    "split": "test"}) + "\n")
    with pytest.raises(InputError, match="split"):
        read_samples([tmp_path / "bad.jsonl"], 0.1)


def test_fit_sample_takes_the_top_candidates_and_counts_drops():
    budget = TokenBudget(_tok())
    long = "the captain of the ship was in the sea at night with the whale " * 5
    s = TrainSample("a", "x", "q?", [long, "b", "c", "d", "e"], [0, 3], "d")
    drops: dict = {}
    fitted = fit_sample(s, budget, candidates=3, max_tokens=8, drops=drops)
    assert fitted.gold == [0] and len(fitted.candidates) == 3 and budget.count(fitted.candidates[0]) <= 8
    assert fitted.candidates[1:] == ["b", "c"]
    assert fit_sample(TrainSample("b", "x", "q?", ["a", "b", "c"], [2], "d"), budget, 2, 8, drops) is None
    assert fit_sample(TrainSample("c", "x", "q?", ["a", "b"], [0, 1], "d"), budget, 2, 8, drops) is None
    assert drops == {"no positive in the top 2": 1, "no negative candidate": 1}


def test_shuffled_moves_gold_with_its_candidate_and_is_reproducible():
    from bookqa.lab.train.samples import shuffled

    sample = TrainSample("s1", "x", "q?", [f"c{i}" for i in range(10)], [0, 3], "d")
    once = shuffled(sample, seed=0)
    assert once == shuffled(sample, seed=0)  # the same order for the same id and seed
    assert sorted(once.candidates) == sorted(sample.candidates) and once.candidates != sample.candidates
    assert sorted(once.candidates[i] for i in once.gold) == ["c0", "c3"]
    assert (once.question, once.split, once.doc_id) == (sample.question, sample.split, sample.doc_id)
    # over many samples, position 1 holds gold about as often as chance (1 in 10), not always as here
    firsts = [0 in shuffled(TrainSample(f"s{i}", "x", "q?", sample.candidates, [0], "d")).gold for i in range(400)]
    assert 0.05 < sum(firsts) / len(firsts) < 0.15

"""The generative baselines (RankGPT-style permutations, GroupRank-style Likert scores): window
arithmetic, lenient parsing, and whole reranks through a deterministic fake completion callable that
reads the passages off the prompt and answers from a known preferred order (no model involved)."""
from __future__ import annotations

import json
import math
import random
import re

import pytest

from bookqa.chunk import Chunk
from bookqa.errors import ConfigError, GeneratorError
from bookqa.generate.base import Completion
from bookqa.lab.baselines.generative import one_line, truncate_tokens
from bookqa.lab.baselines.likert import LikertReranker, groups, parse_scale, parse_scores
from bookqa.lab.baselines.rankgpt import PermutationReranker, parse_permutation, windows
from bookqa.lab.evaluate.registry import build_configs, parse_config_names
from bookqa.lab.evaluate.corpus import eval_settings
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.runner import Runner, select

from conftest import FIXTURES

PASSAGE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


class FakeGenerator:
    """A deterministic completion callable with the generator interface. ``answer(passages)`` gets the
    passages it finds in the prompt (``[i] text`` lines, in order) and returns the reply; stop strings
    cut the reply as llama.cpp does (the stop string itself is not returned). Tokens = words."""

    model_id = "fake"

    def __init__(self, answer, n_ctx=None):
        self.answer = answer
        self.prompts: list[str] = []
        if n_ctx is not None:
            self.n_ctx = n_ctx

    def complete(self, prompt_or_messages, max_tokens, temperature=0.0, stop=None):
        assert isinstance(prompt_or_messages, str) and temperature == 0.0
        self.prompts.append(prompt_or_messages)
        passages = [text for _, text in PASSAGE_LINE.findall(prompt_or_messages)]
        text = self.answer(passages)
        for s in stop or []:
            if s in text:
                text = text[:text.index(s)]
        return Completion(text=text, prompt_tokens=self.count_tokens(prompt_or_messages),
                          completion_tokens=self.count_tokens(text), seconds=0.001, finish_reason="stop")

    def count_tokens(self, text):
        return len(text.split())


def _passage(key: int) -> str:
    return f"Passage P{key:03d} is about something\n\nnumber {key}."  # newlines: collapsed into one line


def _key(text: str) -> int:
    return int(re.search(r"P(\d{3})", text).group(1))


def permutation_oracle(relevance: dict[int, float]):
    """Orders the window's passages by ``relevance`` of their key (ties: window order)."""
    def answer(passages):
        order = sorted(range(len(passages)), key=lambda i: (-relevance[_key(passages[i])], i))
        return " > ".join(f"[{i + 1}]" for i in order)
    return answer


def likert_oracle(score_of: dict[int, int]):
    def answer(passages):
        return "```json\n" + json.dumps({str(i): score_of[_key(p)] for i, p in enumerate(passages, 1)}) + "\n```"
    return answer


# --- window arithmetic ----------------------------------------------------------------------------

def test_windows_cover_every_candidate_back_to_front():
    for k in range(0, 61):
        for w in range(2, 13):
            for s in range(1, w + 1):
                spans = windows(k, w, s)
                if k == 0:
                    assert spans == []
                    continue
                covered = set()
                for a, b in spans:
                    assert 0 <= a < b <= k and b - a <= w
                    covered.update(range(a, b))
                assert covered == set(range(k)), (k, w, s)
                assert spans[0][1] == k and spans[-1][0] == 0  # starts at the bottom, ends at the top
                expected = 1 if k <= w else 1 + math.ceil((k - w) / s)
                assert len(spans) == expected, (k, w, s)
                for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
                    assert a2 < a1 and b2 < b1  # moving up
                    assert b2 >= a1  # no gap between consecutive windows
                    if s < w:
                        assert b2 > a1  # they overlap: a candidate can be carried up


def test_windows_examples_and_invalid():
    assert windows(20, 10, 5) == [(10, 20), (5, 15), (0, 10)]
    assert windows(22, 10, 5) == [(12, 22), (7, 17), (2, 12), (0, 7)]  # the top 2 are still seen
    assert windows(7, 10, 5) == [(0, 7)]
    for w, s in ((1, 1), (10, 0), (10, 11)):
        with pytest.raises(ConfigError):
            windows(20, w, s)


def test_groups():
    assert groups(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert groups(5, 5) == [(0, 5)] and groups(0, 5) == []
    with pytest.raises(ConfigError):
        groups(5, 0)


# --- parsing ----------------------------------------------------------------------------------------

def test_parse_permutation_clean_partial_duplicated_garbage():
    p = parse_permutation("[3] > [1] > [2]", 3)
    assert p.order == [2, 0, 1] and not p.failed and not p.repaired
    p = parse_permutation("[3] > [1]", 4)  # partial (e.g. cut by max_tokens): the rest keep their order
    assert p.order == [2, 0, 1, 3] and p.missing == 2 and p.repaired
    p = parse_permutation("[2] > [2] > [1] > [3] > [1]", 3)
    assert p.order == [1, 0, 2] and p.duplicates == 2 and p.repaired
    p = parse_permutation("[7] > [1] > [0]", 3)
    assert p.order == [0, 1, 2] and p.out_of_range == 2 and p.missing == 2 and p.repaired
    p = parse_permutation("The ranking: [2] > [3] > [1]. Passage 2 mentions 1902.", 3)
    assert p.order == [1, 2, 0] and not p.repaired  # bracketed ids win over numbers in the prose
    p = parse_permutation("3, 1, 2", 3)  # no brackets: bare numbers
    assert p.order == [2, 0, 1] and not p.repaired
    for garbage in ("I cannot rank these passages.", "", "In 2023 something happened.", "[] > []"):
        p = parse_permutation(garbage, 3)
        assert p.failed and p.order == [0, 1, 2] and not p.repaired, garbage


def test_parse_scores_clean_fenced_partial_garbage():
    p = parse_scores('{"1": 7, "2": 0, "3": 10}', 3, 0, 10)
    assert p.scores == [7, 0, 10] and not p.failed and not p.repaired
    p = parse_scores('Here you go:\n```json\n{"1": 3, "2": 9}\n```\nPassage 2 is the best.', 2, 0, 10)
    assert p.scores == [3, 9] and not p.repaired
    assert parse_scores('{"1": 3, "2": 9', 2, 0, 10).scores == [3, 9]  # cut at the stop "}"
    assert parse_scores('{"passage 1": "6", "[2]": 4.5}', 2, 0, 10).scores == [6, 4.5]
    p = parse_scores('{"1": 5}', 3, 0, 10)
    assert p.scores == [5, 0, 0] and p.missing == 2 and p.repaired
    p = parse_scores('{"1": 15, "2": -3, "4": 8, "1": 2}', 2, 0, 10)
    assert p.scores == [10, 0] and p.clamped == 2 and p.out_of_range == 1 and p.duplicates == 1 and p.repaired
    assert parse_scores("[7, 0, 3]", 3, 0, 10).scores == [7, 0, 3]  # a bare list: one score per passage
    for garbage in ("I think passage one is relevant.", "", "{}", '{"a": 1}'):
        p = parse_scores(garbage, 3, 0, 10)
        assert p.failed and p.scores == [0, 0, 0], garbage
    p = parse_scores('{"2": 4}', 3, 1, 5)  # another scale: missing entries get its lowest score
    assert p.scores == [1, 4, 1]


def test_parse_scale():
    assert parse_scale("0-10") == (0, 10) and parse_scale(" 1 - 5 ") == (1, 5)
    for bad in ("10", "5-1", "a-b", "3-3"):
        with pytest.raises(ConfigError):
            parse_scale(bad)


def test_truncate_tokens():
    count = lambda t: len(t.split())  # noqa: E731
    text = " ".join(f"w{i}" for i in range(100))
    cut, truncated = truncate_tokens(text, 30, count)
    assert truncated and count(cut) <= 30 and count(cut) >= 25 and text.startswith(cut)
    assert truncate_tokens("short text", 30, count) == ("short text", False)
    assert one_line("a\n\n b\tc ") == "a b c"


# --- whole reranks through the fake generator -------------------------------------------------------

def _chunks(keys):
    return [Chunk(id=100 + k, start=0, end=1, tokens=5, text=_passage(k)) for k in keys]


def test_permutation_yields_the_preferred_order_when_one_window_holds_all():
    keys = list(range(8))
    relevance = {k: random.Random(k).random() for k in keys}
    gen = FakeGenerator(permutation_oracle(relevance))
    res = PermutationReranker(gen, window=10, stride=5).rank("which passage?", _chunks(keys))
    assert res.chunk_ids == [100 + k for k in sorted(keys, key=lambda k: -relevance[k])]
    assert [r.score for r in res.results] == [8, 7, 6, 5, 4, 3, 2, 1]  # K − position: coarse, monotone
    assert res.info["generator_calls"] == 1 and res.info["windows"] == 1
    assert res.info["parse_failures"] == 0 and res.info["repairs"] == 0
    assert "\n\n" not in PASSAGE_LINE.findall(gen.prompts[0])[0][1]  # one line per passage


def test_permutation_sliding_window_by_hand():
    # K=6, window 4, stride 2, the preferred order is the reverse of the first-stage order.
    # windows (2,6) then (0,4): [0,1,2,3,4,5] -> [0,1,5,4,3,2] -> [5,4,1,0,3,2]
    gen = FakeGenerator(permutation_oracle({k: float(k) for k in range(6)}))
    res = PermutationReranker(gen, window=4, stride=2).rank("q", _chunks(range(6)))
    assert res.chunk_ids == [105, 104, 101, 100, 103, 102]
    assert [[_key(t) for _, t in PASSAGE_LINE.findall(p)] for p in gen.prompts] == [[2, 3, 4, 5], [0, 1, 5, 4]]


@pytest.mark.parametrize("k,window,stride", [(20, 10, 5), (20, 20, 10), (37, 10, 5), (50, 20, 10), (23, 6, 3),
                                             (15, 4, 1), (30, 8, 8)])
def test_permutation_brings_the_best_to_the_top_through_the_windows(k, window, stride):
    for seed in range(5):
        keys = list(range(k))
        rng = random.Random(seed)
        relevance = {key: rng.random() for key in keys}
        gen = FakeGenerator(permutation_oracle(relevance))
        res = PermutationReranker(gen, window=window, stride=stride).rank("q", _chunks(keys))
        preferred = [100 + key for key in sorted(keys, key=lambda key: -relevance[key])]
        assert sorted(res.chunk_ids) == sorted(preferred)
        top = window - stride if k > window else k  # what one back-to-front pass guarantees
        assert res.chunk_ids[:top] == preferred[:top], (k, window, stride, seed)
        assert res.info["generator_calls"] == len(windows(k, window, stride))
        # every candidate was shown to the generator
        shown = {_key(t) for p in gen.prompts for _, t in PASSAGE_LINE.findall(p)}
        assert shown == set(keys)


def test_permutation_counts_tokens_failures_and_repairs():
    replies = iter(["Sorry, I can't.", "[2] > [2] > [11]", "[1] > [2] > [3] > [4] > [5] > [6] > [7] > [8] > [9] > [10]"])
    gen = FakeGenerator(lambda passages: next(replies))
    res = PermutationReranker(gen, window=10, stride=5).rank("q", _chunks(range(20)))
    assert res.info["generator_calls"] == 3 and res.info["parse_failures"] == 1 and res.info["repairs"] == 1
    assert res.info["tokens_generated"] == 3 + 5 + 19  # words of the three replies (the fake's tokens)
    assert res.info["ids_duplicated"] == 1 and res.info["ids_out_of_range"] == 1 and res.info["ids_missing"] == 9
    assert res.info["calls_unchanged"] == 1  # the last answer repeats the order it was shown
    # window (10,20) unreadable: kept; (5,15): [2] first, then the rest in order; (0,10): as is
    assert res.chunk_ids[:7] == [100, 101, 102, 103, 104, 106, 105]
    assert res.timings["generate"] == pytest.approx(0.003) and res.timings["total"] > 0  # the fake's seconds
    assert res.info["reranker"] == "rankgpt" and res.info["generator"] == "fake" and res.info["prefix_used"] is False


def test_likert_ranks_by_score_and_breaks_ties_by_first_stage_rank():
    score_of = {0: 3, 1: 8, 2: 3, 3: 10, 4: 0, 5: 8, 6: 3, 7: 10, 8: 1, 9: 8, 10: 5, 11: 3}
    gen = FakeGenerator(likert_oracle(score_of))
    res = LikertReranker(gen, group_size=5).rank("q", _chunks(range(12)))
    expected = [3, 7, 1, 5, 9, 10, 0, 2, 6, 11, 8, 4]  # by score, equal scores in first-stage order
    assert res.chunk_ids == [100 + k for k in expected]
    assert [r.score for r in res.results] == [score_of[k] for k in expected]
    assert res.info["generator_calls"] == 3 and res.info["groups"] == 3 and res.info["parse_failures"] == 0
    assert res.info["scale"] == "0-10" and res.info["scores_missing"] == 0 and res.info["calls_unchanged"] == 0
    assert all("0 (irrelevant) to 10" in p for p in gen.prompts)


def test_likert_failed_and_partial_groups():
    replies = iter(['{"1": 9, "3": 4}', "no idea", '{"1": 2, "2": 12}', '{"1": 3, "2": 3}'])
    gen = FakeGenerator(lambda passages: next(replies))
    res = LikertReranker(gen, group_size=3, scale="0-10").rank("q", _chunks(range(10)))
    # group 1: [9, 0 (missing), 4]; group 2 unreadable: all 0; group 3: [2, 10 (clamped), 0 (missing)];
    # group 4 (one candidate): 3 (id 2 is out of range)
    assert res.chunk_ids == [107, 100, 102, 109, 106, 101, 103, 104, 105, 108]
    assert res.info["parse_failures"] == 1 and res.info["repairs"] == 3 and res.info["scores_missing"] == 5
    assert res.info["tokens_generated"] == 4 + 2 + 4 + 4 and res.info["calls_unchanged"] == 0


def test_passages_are_cut_to_the_budget_and_to_the_context():
    long = [Chunk(id=i, start=0, end=1, tokens=500, text=f"P{i:03d} " + "word " * 499) for i in range(4)]
    seen = []
    gen = FakeGenerator(lambda passages: seen.append([len(p.split()) for p in passages]) or "[1] > [2]")
    res = PermutationReranker(gen, window=4, stride=2, passage_tokens=50).rank("q", long)
    assert all(45 <= n <= 50 for n in seen[0]) and res.info["truncated_passages"] == 4
    # a generator with a small context: the passages get what is left after the prompt and the answer
    small = FakeGenerator(lambda passages: seen.append([len(p.split()) for p in passages]) or "[1]", n_ctx=600)
    ranker = PermutationReranker(small, window=4, stride=2, passage_tokens=300)
    ranker.rank("q", long)
    fixed = small.count_tokens(ranker.prompt("q", [""] * 4))
    room = (600 - ranker.max_tokens(4) - fixed - 64) // 4
    assert room < 300 and all(room - 5 <= n <= room for n in seen[-1])
    assert small.count_tokens(small.prompts[-1]) + ranker.max_tokens(4) <= 600
    with pytest.raises(GeneratorError, match="context"):
        PermutationReranker(FakeGenerator(lambda p: "[1]", n_ctx=120), window=4, stride=2).rank("q", long)


def test_contract_edges():
    gen = FakeGenerator(lambda passages: "[1]")
    ranker = PermutationReranker(gen, window=10, stride=5)
    assert len(ranker.rank("q", [])) == 0
    one = ranker.rank("q", ["only one"])
    assert one.chunk_ids == [0] and one.info["generator_calls"] == 0  # nothing to order: no call
    with pytest.raises(ConfigError):
        PermutationReranker(gen, window=4, stride=5)
    with pytest.raises(ConfigError):
        LikertReranker(gen, scale="10-0")
    with pytest.raises(ConfigError):
        PermutationReranker(gen, passage_tokens=4)


# --- in the evaluation runner ------------------------------------------------------------------------

def test_runner_compares_both_on_the_stored_candidates(settings, tmp_path):
    esettings = eval_settings(settings.replace(dense_weight=0.0, chunk_tokens=64), tmp_path / "evalbooks")
    data = load_dataset("musique", FIXTURES / "eval" / "musique" / "musique_mini.jsonl")

    def by_length(passages):  # any deterministic preference will do: longest first
        order = sorted(range(len(passages)), key=lambda i: (-len(passages[i]), i))
        return " > ".join(f"[{i + 1}]" for i in order)

    rerankers = {"rankgpt": PermutationReranker(FakeGenerator(by_length), settings=esettings, window=3, stride=1),
                 "likert": LikertReranker(FakeGenerator(lambda ps: json.dumps({str(i): len(p) % 11 for i, p in
                                                                               enumerate(ps, 1)})),
                                          settings=esettings, group_size=2)}
    names = parse_config_names("hybrid,rankgpt,likert")
    configs = build_configs(names, esettings, rerankers=rerankers)
    runner = Runner(data, select(data), configs, esettings, tmp_path / "out", k=4, show_bar=False)
    rows = runner.run()
    for row in rows.values():
        cands = [c["chunk_id"] for c in row["candidates"]["items"]]
        for name in ("rankgpt", "likert"):
            res = row["configs"][name]
            assert sorted(res["chunk_ids"]) == sorted(cands), name
            assert res["info"]["generator_calls"] >= (1 if len(cands) > 1 or name == "likert" else 0)
            assert res["info"]["tokens_generated"] > 0 and res["info"]["parse_failures"] == 0
            assert "rerank.generate" in res["timings"]
    report = json.loads((tmp_path / "out" / "musique-report.json").read_text())
    assert set(report["generation"]) == {"rankgpt", "likert"}
    assert report["generation"]["likert"]["parse_failure_rate"] == 0
    assert any(k.startswith("likert: rerank.generate") for k in report["latency"])
    md = (tmp_path / "out" / "musique-report.md").read_text()
    assert "## Generated output of the generative rerankers" in md
    assert re.search(r"\| rankgpt \| 2 \| [\d.]+ \| \d+ \| [\d.]+ \| 0 of \d+ \(0\.0%\) \| \d+ of", md)
    assert "rankgpt" not in parse_config_names(None)  # generative baselines are opt-in


# --- the real local generator (llama.cpp on the embedded model) ----------------------------------------

@pytest.mark.real_model
def test_real_local_generator_on_five_passages():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from bookqa.generate import get_generator
    from bookqa.settings import Settings

    generator = get_generator(Settings.from_env(generator="local", generator_n_ctx=2048))
    passages = ["Harbor Lights is a 1931 novel about a lighthouse keeper on a remote island.",
                "Cobalt is mined mainly in central Africa and is used in rechargeable batteries.",
                "The glass harmonica is a musical instrument made of spinning glass bowls.",
                "Silent Harbour is an oil painting by Ada Brook, finished in 1902.",
                "The River Ouse flows through the city of York before joining the Humber estuary."]
    question = "Who painted Silent Harbour?"
    for ranker in (PermutationReranker(generator, window=10, stride=5, keep_answers=1),
                   LikertReranker(generator, group_size=5, keep_answers=1)):
        res = ranker.rank(question, passages)
        print(ranker.name, res.info["answers"], res.chunk_ids, res.info["tokens_generated"], res.timings)
        assert sorted(res.chunk_ids) == [0, 1, 2, 3, 4]
        assert res.info["generator_calls"] == 1 and res.info["tokens_generated"] > 0
        assert res.info["prompt_tokens"] > 50 and res.timings["generate"] > 0
        assert res.info["parse_failures"] == 0  # the model answers in the asked form on this easy case
        if ranker.name == "likert":
            # The order is the model's own scores, as parsed from its answer (ties keep the input order).
            # Which passage the 0.5B model scores highest is its judgement, not bookqa's, and it moves with
            # the CPU's kernels: the answering passage came first on an AVX2 CPU, second (6 against 8) on
            # one with AVX-512; so the test holds the ranking to the answer, not to a right answer.
            given = parse_scores(res.info["answers"][0], len(passages), 0, 10).scores
            assert [r.score for r in res.results] == sorted(given, reverse=True)
            assert res.chunk_ids == sorted(range(len(passages)), key=lambda i: (-given[i], i))

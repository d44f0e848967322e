"""Language handling and garbled-output detection (fake completion callables)."""
from __future__ import annotations

from pathlib import Path

import pytest

from summarizer import Summarizer, clean_summary, detect_language, extractive_summary, problem
from summarizer.quality import trim_to

ZH = (Path(__file__).parent / "fixtures" / "retrieve" / "lantern_zh.txt").read_text(encoding="utf-8")


def words(text: str) -> int:
    return len(text.split())


def zh_pieces():
    paras = [p.strip() for p in ZH.split("\n") if p.strip()]
    out, pos = [], 0
    for p in paras:
        start = ZH.index(p, pos)
        out.append((p, start, start + len(p)))
        pos = start + len(p)
    return out


EN = [(f"Passage {i}. Mr Jarndyce walked with Esther through the cold rooms of Bleak House.", i * 90, i * 90 + 80)
      for i in range(25)]


def test_chinese_text_gets_chinese_prompts_and_summaries():
    prompts = []

    def complete(prompt, max_tokens):
        prompts.append(prompt)
        return "老陈在城南开了一家灯笼铺，他年过六十，手艺却越来越精。多年以后，当年的书生中了举，回来报答了他。"

    pieces = zh_pieces()
    assert detect_language([p[0] for p in pieces]) == "zh"
    tree = Summarizer(complete, len).summarize(pieces)
    assert tree.meta["language"] == "zh"
    assert all("叙事摘要" in p and "第 1 / 1 部分" in p for p in prompts)
    assert "50 to 100 words" not in prompts[0]
    assert tree.root.status == "ok" and "灯笼" in tree.root.text


def test_english_prompt_rejects_chinese_answer_then_falls_back():
    answers = iter(["老陈在城南开了一家灯笼铺，手艺越来越精，后来书生中举回来报答了他。"] * 2)
    tree = Summarizer(lambda p, m: next(answers), words).summarize(EN[:5])
    node = tree.root
    assert node.status == "failed"
    assert "not in the language of the text" in node.error
    assert "Jarndyce" in node.text  # extractive fallback from the source chunks


@pytest.mark.parametrize("bad, reason", [
    ("", "empty output"),
    ("   \n  ", "empty output"),
    ("!!! ### 123 456 ... --- *** 789 %%%", "mostly non-letters"),
    ("the man went home " * 12, "repeats itself"),
    ("Yes.", "too short"),
])
def test_garbled_output_is_retried_then_marked(bad, reason):
    prompts = []

    def complete(prompt, max_tokens):
        prompts.append(prompt)
        return bad

    tree = Summarizer(complete, words).summarize(EN[:5])
    node = tree.root
    assert len(prompts) == 2  # one try and one retry
    assert "could not be used" in prompts[1] and prompts[1].startswith(prompts[0])
    assert node.status == "failed" and reason in node.error
    assert node.text and problem(node.text, "en") is None  # extractive fallback is real text
    assert tree.meta["stats"]["failed"] == 1


def test_retry_that_works_is_marked_retried():
    answers = iter(["", "Mr Jarndyce showed Esther the cold rooms of Bleak House and she settled in."])
    tree = Summarizer(lambda p, m: next(answers), words).summarize(EN[:5])
    assert tree.root.status == "retried" and tree.root.error == "empty output"
    assert tree.root.text.startswith("Mr Jarndyce")


def test_failed_higher_level_falls_back_to_its_children():
    def complete(prompt, max_tokens):
        if "Combine them" in prompt:
            return "???"
        return "Mr Jarndyce walked with Esther, and they spoke of Ada and Richard at length."

    tree = Summarizer(complete, words).summarize(EN)
    assert [n.status for n in tree.levels[0]] == ["ok", "ok"]
    assert tree.root.status == "failed" and "Jarndyce" in tree.root.text


def test_clean_summary_strips_labels_and_cut_sentences():
    raw = "**Detailed Narrative Summary:**\n\nEsther arrived. Ada smiled at her and Richard laughed. Then the"
    assert clean_summary(raw) == "Esther arrived. Ada smiled at her and Richard laughed."
    assert clean_summary("Summary: Esther arrived at the house.") == "Esther arrived at the house."
    assert clean_summary("In the third person, past tense: esther arrived.") == "Esther arrived."
    assert clean_summary("In the morning, Esther arrived.") == "In the morning, Esther arrived."


def test_long_answers_are_cut_at_a_sentence_end():
    import random

    rng = random.Random(1)
    vocab = ("Esther Ada Richard Jarndyce fog London court letter house garden walked spoke waited found "
             "carried quietly window lamp bridge river evening morning promise secret").split()
    long = " ".join(" ".join(rng.choice(vocab) for _ in range(9)) + " house." for _ in range(30))  # 300 words
    tree = Summarizer(lambda p, m: long, words).summarize(EN[:5])
    assert tree.root.status == "ok" and tree.root.text.endswith("house.")
    assert 100 < words(tree.root.text) <= 120
    assert trim_to("One two three. Four five six seven.", 5, "en") == "One two three."
    assert trim_to("One two three four five six seven", 5, "en") == "One two three four five six seven"


def test_problem_accepts_normal_prose():
    assert problem("Esther Summerson came to Bleak House, where Mr Jarndyce made her housekeeper.", "en") is None
    assert problem("老陈在城南开了一家灯笼铺，手艺越来越精，后来书生中举回来报答了他。", "zh") is None
    assert problem("Esther came to Bleak House and met everyone there.", "zh") == "not in Chinese"


def test_detect_language():
    assert detect_language("It was a dark and stormy night; the rain fell in torrents.") == "en"
    assert detect_language(ZH) == "zh"
    # a Chinese text with an English licence header is still Chinese
    assert detect_language("The Project Gutenberg eBook. " * 5 + ZH) == "zh"


def test_extractive_summary_chinese():
    text = extractive_summary([p[0] for p in zh_pieces()], "zh")
    assert 20 <= sum(c.isalpha() for c in text) <= 200
    assert all(sentence in ZH for sentence in text.split("。") if sentence)

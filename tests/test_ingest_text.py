"""Project Gutenberg boilerplate, chapter headings and sentence spans (no tokenizer needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bookqa.ingest import prepare_source
from bookqa.ingest.gutenberg import find_body, find_title
from bookqa.ingest.headings import find_headings
from bookqa.ingest.sentences import PUNKT_DIR, punkt_tokenizer, sentence_spans

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
SAMPLE = Path(__file__).parent.parent / "bookqa" / "data" / "sample" / "dying_detective.txt"
MB = 1024 * 1024


def _sentences(text: str, **kw) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text, **kw)]


# --- Project Gutenberg ----------------------------------------------------------------------------

def test_gutenberg_mini_body_and_title():
    source = prepare_source(FIXTURES / "gutenberg_mini.txt", None, MB)
    text = source.text
    start, end = source.body_span
    body = text[start:end]
    assert body.startswith("THE LIGHTHOUSE KEEPER'S LEDGER\n\n\nCHAPTER I.")
    assert body.endswith("a door he had closed was knocking on its\nframe.")
    for boilerplate in ("START OF THIS PROJECT", "Produced by", "End of the Project Gutenberg", "END OF THIS"):
        assert boilerplate not in body
    # offsets are offsets into the full text: the header is still there before the body
    assert text.index("THE LIGHTHOUSE KEEPER'S LEDGER\n\n\nCHAPTER I.") == start
    assert source.title == "The Lighthouse Keeper's Ledger"


def test_bundled_sample_with_crlf():
    raw = SAMPLE.read_bytes()
    assert b"\r\n" in raw  # the sample really has CRLF line endings
    source = prepare_source(SAMPLE, None, MB)
    assert "\r" not in source.text
    assert source.text == raw.decode("utf-8").replace("\r\n", "\n")
    start, end = source.body_span
    assert source.text[start:end].startswith("The Adventure of the Dying Detective\n\n\nBy\n\nSir Arthur Conan Doyle")
    assert source.text[start:end].endswith("at Simpson's would not be out of place.\"")
    assert "Produced by David Brannan" not in source.text[start:end]
    assert source.title == "The Adventure of the Dying Detective"


def test_wrapped_start_marker_and_older_variants():
    text = ("Title: A Long\n    Journey\n\n***START OF THE PROJECT GUTENBERG EBOOK A LONG\nJOURNEY***\n\n"
            "It began at dawn.\n\n***END OF THE PROJECT GUTENBERG EBOOK A LONG JOURNEY***\nlicence\n")
    start, end = find_body(text)
    assert text[start:end] == "It began at dawn."
    assert find_title(text, start) == "A Long Journey"

    old = ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nCall me Ishmael.\n\n"
           "End of The Project Gutenberg Etext of Moby Dick\n")
    start, end = find_body(old)
    assert old[start:end] == "Call me Ishmael."

    curly = "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nBody.\nEnd of Project Gutenberg’s X, by Y\n"
    start, end = find_body(curly)
    assert curly[start:end] == "Body."


def test_credits_repeated_in_footer_are_skipped():
    text = ("*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\n\nAn Anonymous Volunteer\n\n\nX\n\nThe story.\n\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\n\nAn Anonymous Volunteer\n\nlicence\n")
    start, end = find_body(text)
    assert text[start:end] == "X\n\nThe story."


def test_plain_text_has_whole_body():
    text = "\n\n  Just a story.\nNothing else.\n\n"
    assert find_body(text) == (4, len(text) - 2)
    assert find_title(text) is None


# --- headings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "CHAPTER I.", "Chapter 12", "CHAPTER XIV. IN WHICH THE READER MEETS MR. JONES", "BOOK ONE", "PART II",
    "ACT III", "SCENE 2.", "Scene II.--The INFANTA and a PAGE.", "Prologue", "EPILOGUE", "XIV",
    "CHAPTER THE FIRST", "BOOK ONE: 1805", "FIRST EPILOGUE: 1813 - 20", "Chapter 1. Loomings.",
    "第一章", "第十二回 林黛玉进贾府", "第3章 出发", "楔子",
])
def test_heading_lines(line):
    text = f"Some prose before.\n\n{line}\n\nSome prose after."
    headings = find_headings(text)
    assert [text[h.start:h.end] for h in headings] == [line]
    assert headings[0].label == line


@pytest.mark.parametrize("line", [
    "Part two of his plan was to wait for the tide",
    "Chapter 12 of the report says otherwise",
    "preface--is largely made use of in the present remarks.",
    "CHAPTER I CHAPTER II CHAPTER III CHAPTER IV",
    "I",  # a Roman numeral counts only between blank lines
    "第一章的故事很长，这里只是一句普通的话，说的是主人公如何离开家乡，走上一条漫长而艰难的道路。",
])
def test_not_heading_lines(line):
    text = f"Some prose before\n{line}\nand prose after."
    assert find_headings(text) == []


def test_title_line_folds_into_label():
    text = "CHAPTER I\n\nIn Chancery\n\nLondon. Michaelmas term lately over.\n\nCHAPTER II\n\n\"Yes,\" she said.\n"
    labels = [h.label for h in find_headings(text)]
    assert labels == ["CHAPTER I. In Chancery", "CHAPTER II"]


def test_headings_of_the_play_fixture():
    source = prepare_source(FIXTURES / "hamlet_act1.txt", None, MB)
    labels = [h.label for h in find_headings(source.text, *source.body_span)]
    assert labels == ["ACT I", "SCENE I. Elsinore. A platform before the castle.",
                      "SCENE II. A room of state in the castle."]


# --- sentences ------------------------------------------------------------------------------------

def test_punkt_parameters_come_from_the_package(monkeypatch):
    import nltk

    assert PUNKT_DIR.is_dir() and PUNKT_DIR.parent.parent.parent.name == "bookqa"
    monkeypatch.setattr(nltk.data, "path", [])  # no nltk data directory to fall back on
    punkt_tokenizer.cache_clear()
    try:
        tok = punkt_tokenizer()
        assert "mr" in tok._params.abbrev_types
        assert _sentences("Mr. Smith met Dr. Watson. They talked.") == ["Mr. Smith met Dr. Watson.", "They talked."]
    finally:
        punkt_tokenizer.cache_clear()


def test_chinese_sentences():
    text = (FIXTURES / "chinese.txt").read_text(encoding="utf-8")
    sentences = _sentences(text)
    assert sentences == [
        "雨夜与旧信",
        "第一章 雨夜",
        "那天晚上，雨下得很大。",
        "李明撑着一把旧伞，沿着河边慢慢地走回家。",
        "街上几乎没有人，只有远处的路灯在雨中发出昏黄的光。",
        "“你怎么这么晚才回来？”",
        "母亲站在门口问道。",
        "她的声音里带着一点担心，也带着一点责备。",
        "李明笑了笑，说：“路上遇到了一位老朋友，我们聊了很久。”",
        "他把伞放在门边，雨水顺着伞骨滴到地上。",
        "母亲叹了口气！",
        "她转身走进厨房，端出一碗热汤。",
        "“快喝吧，别着凉了。”",
        "他真的只是遇到了老朋友吗？",
        "母亲心里有些怀疑……",
        "可是她什么也没有说。",
        "第二章 旧信",
        "第二天早上，天终于晴了。",
        "李明在抽屉里找到一封旧信，信封已经发黄。",
        "信上只写着一句话：“我们会在桥头再见。”",
        "落款是一个他从未见过的名字！",
        "他反复读了好几遍，心想：这到底是谁写的？",
        "又为什么会放在他的抽屉里？",
    ]


def test_unspaced_chinese_runs_and_brackets():
    text = "他喊道：「真的吗？！」她没有回答……风停了。《旧信》写完了！？、下一段（结束。）最后"
    assert _sentences(text) == ["他喊道：「真的吗？！」", "她没有回答……", "风停了。", "《旧信》写完了！？、",
                                "下一段（结束。）", "最后"]


def test_chinese_lines_without_blank_lines():
    text = "第一回 开端\n　　他来了。她走了！\n　　“好吗？”他问。"
    assert _sentences(text, standalone_starts=[0]) == ["第一回 开端", "他来了。", "她走了！", "“好吗？”", "他问。"]


def test_english_ellipsis_is_not_a_cjk_break():
    assert _sentences("Wait… what did you say? Nothing.") == ["Wait… what did you say?", "Nothing."]


def test_speaker_and_heading_lines_stand_alone():
    text = "ACT I\nSCENE I. A room.\n\nHAMLET\nWho's there?\n\nFIRST CLOWN.\nA pickaxe and a spade.\n"
    heading_starts = [h.start for h in find_headings(text)]
    assert _sentences(text, standalone_starts=heading_starts) == [
        "ACT I", "SCENE I. A room.", "HAMLET", "Who's there?", "FIRST CLOWN.", "A pickaxe and a spade."]


def test_heading_line_is_one_sentence():
    text = "CHAPTER 1. Loomings.\n\nCHAPTER 2. The Carpet-Bag.\n\nCall me Ishmael. Some years ago."
    heading_starts = [h.start for h in find_headings(text)]
    assert _sentences(text, standalone_starts=heading_starts) == [
        "CHAPTER 1. Loomings.", "CHAPTER 2. The Carpet-Bag.", "Call me Ishmael.", "Some years ago."]


def test_paragraphs_split_before_punkt():
    text = "It was late\n\nthe moon was up and nobody was awake\n\n   \nDawn came."
    assert _sentences(text) == ["It was late", "the moon was up and nobody was awake", "Dawn came."]


def test_spans_exclude_whitespace_and_refer_to_the_text():
    source = prepare_source(FIXTURES / "gutenberg_mini.txt", None, MB)
    start, end = source.body_span
    spans = sentence_spans(source.text, start, end)
    assert spans[0][0] == start and spans[-1][1] == end
    previous = start
    for s, e in spans:
        piece = source.text[s:e]
        assert piece == piece.strip() and piece
        assert s >= previous
        assert source.text[previous:s].strip() == ""  # nothing between sentences but whitespace
        previous = e
    texts = [source.text[s:e] for s, e in spans]
    assert "Mr. Edwin Hale came to the island on a grey morning in March." in texts  # "Mr." is no break
    assert "It was 6 a.m. by his watch when the keel touched the shingle." in texts

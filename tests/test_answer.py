"""Citation parsing and resolution edge cases (no model needed)."""
from bookqa.answer import (Evidence, build_messages, evidence_in_document_order, is_chinese, order_evidence, parse_citations,
                           parse_numbers, split_sentences)
from bookqa.chunk import Chunk

BOOK = ("Holmes lay dying in Baker Street. Mrs. Hudson was frightened. "
        "Watson rushed to his friend's side. The ivory box held a spring. "
        "Culverton Smith confessed in the dark room. Inspector Morton came in when the gas was turned up.")


def _chunks():
    cuts = [0, BOOK.index("Watson"), BOOK.index("Culverton"), len(BOOK)]
    return [Chunk(id=i, start=a, end=b, tokens=10, text=BOOK[a:b], chapter=f"Part {i + 1}")
            for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]


def _evidence():
    ch = _chunks()
    # reranker order 3, 1, 2 -> document order renumbers them 1, 2, 3
    ranked = [Evidence(0, ch[2], 5.0, 1), Evidence(0, ch[0], 3.0, 2), Evidence(0, ch[1], 1.0, 3)]
    return evidence_in_document_order(ranked)


def test_document_order_renumbering():
    ev = _evidence()
    assert [e.chunk.id for e in ev] == [0, 1, 2] and [e.number for e in ev] == [1, 2, 3]
    assert [e.rank for e in ev] == [2, 3, 1]


def test_rank_order_keeps_the_rerankers_best_first():
    ch = _chunks()
    ranked = [Evidence(0, ch[2], 5.0, 1), Evidence(0, ch[0], 3.0, 2), Evidence(0, ch[1], 1.0, 3)]
    ev = order_evidence(list(reversed(ranked)), "rank")
    assert [e.chunk.id for e in ev] == [2, 0, 1] and [e.number for e in ev] == [1, 2, 3]
    assert [e.chunk.id for e in order_evidence(ranked, "document")] == [0, 1, 2]
    import pytest

    from bookqa.errors import ConfigError

    with pytest.raises(ConfigError):
        order_evidence(ranked, "shuffled")


def test_parse_numbers_forms():
    assert parse_numbers("1, 3") == [1, 3]
    assert parse_numbers("2-4") == [2, 3, 4]
    assert parse_numbers("1，2") == [1, 2]
    assert parse_numbers("1、3") == [1, 3]


def test_citation_forms_resolve_to_spans():
    ev = _evidence()
    answer = "Holmes was dying in Baker Street [1]. Smith confessed [3][2]. The box had a spring [1, 2]."
    parsed = parse_citations(answer, ev)
    nums = [(c.number, c.chunk_id) for c in parsed.citations]
    assert nums == [(1, 0), (3, 2), (2, 1), (1, 0), (2, 1)]
    for c in parsed.citations:
        assert BOOK[c.start:c.end] == ev[c.number - 1].chunk.text
        assert c.start <= c.quote_start < c.quote_end <= c.end
        assert BOOK[c.quote_start:c.quote_end] == c.quote
    assert parsed.citations[0].quote == "Holmes lay dying in Baker Street."
    assert parsed.citations[1].quote.startswith("Culverton Smith confessed")
    assert parsed.citations[1].claim == "Smith confessed."
    assert parsed.invalid_numbers == [] and parsed.uncited_sentences == []


def test_out_of_range_numbers_are_dropped_and_reported():
    parsed = parse_citations("Watson came [2]. Moriarty did it [7]. Also [0].", _evidence())
    assert [c.number for c in parsed.citations] == [2]
    assert parsed.invalid_numbers == [7, 0]


def test_no_citations_flags_sentences():
    parsed = parse_citations("Holmes was pretending to be ill all along. Yes.", _evidence())
    assert parsed.citations == []
    assert parsed.uncited_sentences == ["Holmes was pretending to be ill all along."]


def test_chinese_brackets_and_sentences():
    ev = _evidence()
    answer = "福尔摩斯假装生病【1】。史密斯认罪了【2，3】！"
    parsed = parse_citations(answer, ev)
    assert [c.number for c in parsed.citations] == [1, 2, 3]
    assert len(split_sentences(answer)) == 2
    assert is_chinese(answer) and not is_chinese("Who is Watson?")


def test_citation_after_full_stop_belongs_to_previous_sentence():
    parsed = parse_citations("Watson rushed to help. [2] The gas was turned up. [3]", _evidence())
    assert [(c.number, c.claim) for c in parsed.citations] == [(2, "Watson rushed to help."),
                                                              (3, "The gas was turned up.")]


def test_messages_follow_question_language_and_number_passages():
    ev = _evidence()
    en = build_messages("Who confessed?", ev, title="Dying Detective")
    assert "[1] (Part 1)" in en[-1]["content"] and "[3] (Part 3)" in en[-1]["content"]
    assert "square brackets" in en[0]["content"]
    zh = build_messages("谁认罪了？", ev)
    assert "中文" in zh[0]["content"] and "问题：谁认罪了？" in zh[-1]["content"]


def test_uncited_sentences_get_inferred_citations():
    from bookqa.answer import annotate, attribute_uncited

    ev = _evidence()
    parsed = parse_citations("Inspector Morton came in when the gas was turned up. Nothing else.", ev)
    assert parsed.citations == []
    attribute_uncited(parsed, ev)
    assert [(c.number, c.inferred) for c in parsed.citations] == [(3, True)]
    assert parsed.citations[0].quote.startswith("Inspector Morton came in")
    shown = annotate(parsed.text, parsed.citations)
    assert shown == "Inspector Morton came in when the gas was turned up. [3] Nothing else."
    # a sentence unrelated to every passage gets no citation
    parsed = attribute_uncited(parse_citations("The weather in Lisbon was pleasant.", ev), ev)
    assert parsed.citations == []


def test_annotate_uses_sentence_offsets_even_when_claim_was_cleaned():
    from bookqa.answer import annotate, attribute_uncited

    ev = _evidence()
    raw = "Inspector Morton came in when the gas was turned up ."  # space before the stop
    parsed = attribute_uncited(parse_citations(raw, ev), ev)
    assert annotate(raw, parsed.citations) == raw + " [3]"


def test_abbreviations_do_not_end_sentences():
    answer = "Holmes asked Dr. Watson to fetch Mr. Culverton Smith. J. Smith came at six [2]."
    spans = [answer[s:e].strip() for s, e in split_sentences(answer)]
    assert spans == ["Holmes asked Dr. Watson to fetch Mr. Culverton Smith.", "J. Smith came at six [2]."]


# --- answer styles and refusals ---------------------------------------------------------------------
def test_prose_and_short_prompts_ask_for_their_form_in_the_question_language():
    from bookqa.answer import ANSWER_STYLES, answer_tokens

    ev = _evidence()
    prose = build_messages("Who confessed?", ev, title="The Dying Detective", style="prose")
    short = build_messages("Who confessed?", ev, title="The Dying Detective", style="short")
    assert "one to three sentences" in prose[0]["content"] and "The passages do not say." in prose[0]["content"]
    assert "short phrase" in short[0]["content"] and "not a sentence" in short[0]["content"]
    assert "Not mentioned in the passages." in short[0]["content"]
    # the worked example shows each form: a cited sentence, or a cited phrase
    assert prose[2]["content"].endswith("[2].") and short[2]["content"] == "Tom Reed, the clerk [2]"
    # the passages and the question are the same in both; only the instruction and the example differ
    assert prose[3] == short[3] and "[3] (Part 3)" in short[3]["content"]
    zh = build_messages("谁承认了？", ev, style="short")
    assert "简短的词语" in zh[0]["content"] and zh[2]["content"] == "文书李明[2]"
    assert ANSWER_STYLES == ("prose", "short")
    assert answer_tokens("short", 256) == 48 and answer_tokens("prose", 256) == 256 and answer_tokens("short", 20) == 20


def test_the_worked_refusal_example_shows_each_styles_refusal():
    from bookqa.answer import REFUSALS

    ev = _evidence()
    for style in ("prose", "short"):
        plain = build_messages("Who confessed?", ev, style=style)
        worked = build_messages("Who confessed?", ev, style=style, refusal_example=True)
        assert len(plain) == 4 and len(worked) == 6 and worked[:3] == plain[:3] and worked[-1] == plain[-1]
        assert worked[3]["role"] == "user" and "watch chain" in worked[3]["content"]
        assert worked[4] == {"role": "assistant", "content": REFUSALS[style]["en"]}
    zh = build_messages("谁承认了？", ev, style="short", refusal_example=True)
    assert "怀表链" in zh[3]["content"] and zh[4]["content"] == REFUSALS["short"]["zh"]


def test_an_unknown_style_is_a_config_error():
    import pytest

    from bookqa.errors import ConfigError
    from bookqa.settings import Settings

    with pytest.raises(ConfigError, match="answer_style"):
        build_messages("Who?", _evidence(), style="essay")
    with pytest.raises(ConfigError, match="answer_style"):
        Settings.from_env(answer_style="essay")


def test_a_short_answer_is_attributed_and_a_refusal_is_not():
    from bookqa.answer import attribute_uncited, is_refusal

    ev = _evidence()
    parsed = attribute_uncited(parse_citations("Culverton Smith", ev, min_words=1), ev)
    assert [(c.number, c.inferred) for c in parsed.citations] == [(3, True)]
    for text in ("Not mentioned in the passages.", "The passages do not say.", "段落中没有提到。",
                 "The text does not mention his age.", "No information available"):
        assert is_refusal(text), text
        assert parse_citations(text, ev, min_words=1).uncited_sentences == []  # nothing to attribute
    for text in ("Culverton Smith [3]", "He mentioned the gas", "Watson"):
        assert not is_refusal(text), text


# --- checked citations ------------------------------------------------------------------------------
class _Verdicts:
    """A checker with fixed verdicts per passage text fragment (the check's logic is under test here; the
    real judge and embedder are measured by the answers bench)."""

    name = "fixed"
    threshold = 0.5

    def __init__(self, backed: dict[str, set[str]]):
        self.backed, self.calls = backed, []

    def support(self, question, claim, passage):
        self.calls.append((claim, passage[:12]))
        return 1.0 if any(key in passage for key in self.backed.get(claim, ())) else 0.0


def test_checked_citations_mark_unsupported_model_citations_and_repoint_or_drop_attributions():
    from bookqa.answer import attribute_uncited
    from bookqa.citecheck import check_citations

    ev = _evidence()
    answer = "Smith confessed in the dark room [1]. Watson rushed to his friend's side. The gas was turned up here."
    parsed = attribute_uncited(parse_citations(answer, ev), ev)
    claims = [c.claim for c in parsed.citations]
    assert claims[0] == "Smith confessed in the dark room." and any(c.inferred for c in parsed.citations)
    checker = _Verdicts({"Smith confessed in the dark room.": {"Culverton"},  # backed by passage 3, cited [1]
                         "Watson rushed to his friend's side.": {"Watson"}})
    checked = check_citations(parsed, ev, "Who confessed?", checker)
    by_claim = {c.claim: c for c in checked.citations}
    model = by_claim["Smith confessed in the dark room."]
    assert model.number == 1 and model.supported is False and not model.inferred  # kept, marked
    assert [c.number for c in checked.citations if c.claim == model.claim] == [1]  # nothing "corrected" beside
    assert by_claim["Watson rushed to his friend's side."].supported is True
    # the gas sentence: attributed by word overlap, backed by no passage -> dropped, listed as uncited
    assert "The gas was turned up here." not in by_claim and "The gas was turned up here." in checked.uncited_sentences
    assert checked.checked_by == "fixed"
    assert len(checker.calls) == len(set(checker.calls))  # each (claim, passage) judged once


def test_an_attribution_that_fails_moves_to_a_passage_that_backs_it():
    from bookqa.answer import attribute_uncited
    from bookqa.citecheck import check_citations

    ev = _evidence()
    parsed = attribute_uncited(parse_citations("Holmes lay dying in Baker Street.", ev), ev)
    assert [c.number for c in parsed.citations] == [1]
    checked = check_citations(parsed, ev, "Where?", _Verdicts({"Holmes lay dying in Baker Street.": {"Culverton"}}))
    assert [(c.number, c.inferred, c.supported) for c in checked.citations] == [(3, True, True)]
    assert checked.citations[0].quote.startswith("Culverton")


def test_an_answer_is_backed_when_one_citation_passes_the_check():
    from bookqa.answer import attribute_uncited
    from bookqa.citecheck import check_citations
    from bookqa.pipeline import answer_backed

    ev = _evidence()

    def checked(text, backed):
        parsed = attribute_uncited(parse_citations(text, ev, min_words=1), ev)
        return answer_backed(check_citations(parsed, ev, "Who?", _Verdicts(backed)), text), parsed

    assert checked("Culverton Smith [3]", {"Culverton Smith": {"Culverton"}})[0] is True
    # cited, but the passage does not back it: the answer is shown as not held by the passages
    assert checked("Mrs. Hudson [1]", {})[0] is False
    # an uncited claim whose attribution fails everywhere is dropped: nothing backs the answer either
    backed, parsed = checked("Mrs. Hudson, the landlady", {})
    assert backed is False and not parsed.citations
    assert answer_backed(parse_citations("Not mentioned in the passages.", ev), "Not mentioned in the passages.") is None
    assert answer_backed(parse_citations("Culverton Smith [3]", ev), "Culverton Smith [3]") is None  # unchecked


def test_short_claims_are_judged_with_their_question():
    from bookqa.citecheck import claim_text, get_checker

    assert claim_text("Who were the two bad mice?", "Lucinda and Jane") == "Who were the two bad mice? Lucinda and Jane"
    long = "Tom Thumb and Hunca Munca broke the dolls' dinner in the house."
    assert claim_text("Who?", long) == long
    assert get_checker("off") is None
    import pytest

    from bookqa.errors import ConfigError

    with pytest.raises(ConfigError):
        get_checker("judge")
    with pytest.raises(ConfigError):
        get_checker("oracle", generator=object())


def test_both_backs_a_citation_only_when_every_checker_does_and_asks_the_judge_only_when_needed():
    from bookqa.citecheck import BothChecker

    class Fixed:
        def __init__(self, value, threshold):
            self.value, self.threshold, self.calls = value, threshold, 0

        def support(self, question, claim, passage):
            self.calls += 1
            return self.value

    cosine, judge = Fixed(0.62, 0.5), Fixed(1.0, 0.5)
    both = BothChecker([cosine, judge])
    assert both.support("q", "c", "p") >= both.threshold and judge.calls == 1
    judge.value = 0.0
    assert both.support("q", "c", "p") < both.threshold
    low, judge2 = Fixed(0.31, 0.5), Fixed(1.0, 0.5)
    assert BothChecker([low, judge2]).support("q", "c", "p") < 0.5 and judge2.calls == 0  # the cosine said no first
    # each checker's own threshold maps to 0.5
    assert BothChecker([Fixed(0.3, 0.3)]).support("q", "c", "p") == 0.5


def test_auto_checks_with_both_unless_the_generator_is_too_small_to_judge():
    from bookqa.pipeline import resolved_citation_check
    from bookqa.settings import Settings

    s = Settings()
    assert resolved_citation_check(s) == "both"  # the default generator, the 1.5B, judges
    assert resolved_citation_check(s.replace(generator_model="qwen2.5-coder-0.5b")) == "embedder"
    assert resolved_citation_check(s.replace(generator="remote", generator_model="gpt-4o-mini")) == "both"
    assert resolved_citation_check(s.replace(citation_check="off", generator_model="qwen2.5-coder-0.5b")) == "off"


def test_ask_warns_when_no_passage_backs_the_answer(tmp_path, monkeypatch):
    """``ask`` end to end with the first stage only, a scripted generator and fixed verdicts: an answer
    no passage backs is reported (``info.backed`` false, one warning), a backed one is not."""
    from pathlib import Path

    import bookqa.pipeline
    from bookqa.library import Library
    from bookqa.pipeline import ask
    from bookqa.settings import Settings

    class Scripted:
        model_id = "scripted"

        def __init__(self, text):
            self.text = text

        def stream(self, messages, max_tokens, temperature=0.0):
            yield self.text

    sample = Path(__file__).resolve().parent.parent / "bookqa" / "data" / "sample" / "dying_detective.txt"
    settings = Settings.from_env(home=tmp_path / "home", summaries="none", top_k=4, citation_check="embedder")
    book = Library(settings).ingest(sample).book
    verdicts = _Verdicts({"a planter from Sumatra": {""}})  # any passage backs it
    monkeypatch.setattr(bookqa.pipeline, "citation_checker", lambda settings, generator: verdicts)
    question = "Who is Culverton Smith?"
    backed = ask(book, question, settings, rerank=False, generator=Scripted("a planter from Sumatra [1]"))
    unbacked = ask(book, question, settings, rerank=False, generator=Scripted("a sailor from Kent [1]"))
    refused = ask(book, question, settings, rerank=False, generator=Scripted("Not mentioned in the passages."))
    assert unbacked.info["backed"] is False and refused.info["backed"] is None and refused.info["refused"]
    assert any("no passage that backs this answer" in w for w in unbacked.warnings)
    assert not any("no passage that backs" in w for w in backed.warnings + refused.warnings)
    assert backed.info["backed"] is True and backed.citations[0].supported


def test_auto_evidence_order_follows_the_kind_of_book():
    import pytest

    from bookqa.answer import evidence_order_for, order_evidence
    from bookqa.errors import ConfigError

    assert evidence_order_for("auto", "transcript") == "document"
    assert evidence_order_for("auto", "novel") == "rank"
    assert evidence_order_for("document", "novel") == "document" and evidence_order_for("rank", "transcript") == "rank"
    with pytest.raises(ConfigError):
        evidence_order_for("shuffled", "novel")
    with pytest.raises(ConfigError, match="evidence_order_for"):
        order_evidence([], "auto")

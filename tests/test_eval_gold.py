"""Gold evidence in dataset terms -> chunk ids of the ingested book."""
from __future__ import annotations

import pytest

from bookqa.chunk import Chunk
from bookqa.lab.evaluate.corpus import BookPreparer, eval_settings
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.gold import chunks_overlapping, gold_chunks, marker_spans, silver_evidence

from conftest import FIXTURES

EVAL = FIXTURES / "eval"


@pytest.fixture
def small_chunks(settings, tmp_path):
    """Evaluation settings with short chunks (several per fixture story) and no dense index."""
    return eval_settings(settings.replace(chunk_tokens=64, dense_weight=0.0), tmp_path / "evalbooks")


def _prepare(settings, doc):
    return BookPreparer(settings, need_dense=False).prepare(doc).book


def test_marker_spans_and_overlap_by_hand():
    text = "[1] Alpha one.\n[2] Beta two.\n\n[3] Gamma.\n"
    spans = marker_spans(text)
    assert spans == {1: (0, 14), 2: (15, 28), 3: (30, 40)}
    assert text[slice(*spans[2])] == "[2] Beta two."
    chunks = [Chunk(0, 0, 10, 3, text[0:10]), Chunk(1, 10, 20, 3, text[10:20]), Chunk(2, 20, 41, 3, text[20:41])]
    assert chunks_overlapping(chunks, [spans[2]]) == [1, 2]
    assert chunks_overlapping(chunks, [spans[1]]) == [0, 1]
    assert chunks_overlapping(chunks, [(40, 41)]) == [2]
    assert chunks_overlapping(chunks, [(5, 5)]) == []


def test_detectiveqa_markers_map_to_the_chunks_holding_the_paragraphs(small_chunks):
    data = load_dataset("detectiveqa", EVAL / "detectiveqa_hub", langs=("en",))
    book = _prepare(small_chunks, data.documents[0])
    chunks = book.chunks
    assert len(chunks) > 5
    q = next(q for q in data.questions if "Rotherhithe" in q.options["A"])
    gold = gold_chunks(q, chunks, book.text, data.documents[0])
    assert gold.kind == "annotated" and gold.chunk_ids and not gold.missing
    start, end = marker_spans(book.text)[5]
    expected = [c.id for c in chunks if c.start < end and c.end > start]
    assert gold.chunk_ids == expected
    assert any("Rotherhithe" in chunks[i].text for i in gold.chunk_ids)
    # a paragraph number the novel does not have is reported, not silently dropped
    q.evidence.items = [5, 999]
    assert gold_chunks(q, chunks, book.text, data.documents[0]).missing == [999]


def test_locomo_dia_ids_map_through_chunk_meta(small_chunks):
    data = load_dataset("locomo", EVAL / "locomo" / "locomo_mini.json")
    book = _prepare(small_chunks, data.documents[0])
    chunks = book.chunks
    assert len(chunks) >= 3 and all(c.meta.get("utterances") for c in chunks)
    saturday = next(q for q in data.questions if q.question.startswith("What does Caroline do"))
    gold = gold_chunks(saturday, chunks, book.text)
    assert len(gold.chunk_ids) == 1
    holder = chunks[gold.chunk_ids[0]]
    assert "D2:4" in holder.meta["utterances"] and "volunteering at the shelter" in holder.text
    multi = next(q for q in data.questions if q.category == 1)
    ids = gold_chunks(multi, chunks, book.text).chunk_ids
    assert ids == sorted({c.id for c in chunks for d in ("D1:3", "D2:2", "D2:4") if d in c.meta["utterances"]})


def test_paragraph_corpus_is_one_chunk_per_paragraph(small_chunks):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    doc = data.documents[0]
    book = _prepare(small_chunks, doc)
    assert [c.text for c in book.chunks] == [p.passage for p in doc.paragraphs]
    assert all(book.text[c.start:c.end] == c.text for c in book.chunks)
    gold = gold_chunks(data.questions[0], book.chunks, book.text, doc)
    assert gold.chunk_ids == [1, 3] and gold.kind == "annotated"
    # re-preparing finds the book built: no stage runs again
    again = BookPreparer(small_chunks, need_dense=False).prepare(doc)
    assert again.book.id == book.id and again.stages_run == []


def test_silver_rule_by_hand():
    texts = [
        "Krag met Maskull at the seance.",                # answer, shares {maskull}
        "Maskull accepted the invitation from Krag.",     # answer, shares {maskull, accept?, invitation}
        "Nightspore watched the stars.",                  # no answer
        "Krag left. Maskull accepted an invitation.",     # answer, same overlap as chunk 1
    ]
    question = "Who does Maskull accept an invitation from?"
    # content words: maskull, accept, invitation -> chunk 1 and 3 share {maskull, invitation} (accepted != accept)
    assert silver_evidence(question, ["Krag", "Krag."], texts) == [1, 3]
    assert silver_evidence(question, ["Krag"], texts, max_chunks=1) == [1]
    assert silver_evidence(question, ["Nightspore"], texts) == []  # best overlap 0
    assert silver_evidence(question, ["the", "a"], texts) == []  # only stop words
    assert silver_evidence(question, ["K"], texts) == []  # too short
    assert silver_evidence(question, ["rag"], texts) == []  # whole words only


def test_narrativeqa_silver_on_the_book(small_chunks):
    data = load_dataset("narrativeqa", EVAL / "narrativeqa_jsonl")
    book = _prepare(small_chunks, data.documents[0])
    where = next(q for q in data.questions if q.question.startswith("Where had Holmes"))
    gold = gold_chunks(where, book.chunks, book.text)
    assert gold.kind == "silver" and gold.chunk_ids
    assert all("rotherhithe" in book.chunks[i].text.lower() for i in gold.chunk_ids)
    brother = next(q for q in data.questions if "brother" in q.question)
    assert gold_chunks(brother, book.chunks, book.text).chunk_ids == []  # Mycroft is not in the excerpt
    # the Gutenberg header is outside the body, so no chunk holds it
    assert all("Project Gutenberg-tm" not in c.text for c in book.chunks)


def test_quality_has_no_gold(small_chunks):
    data = load_dataset("quality", EVAL / "quality" / "quality_mini.jsonl")
    assert gold_chunks(data.questions[0], [], "").kind == "none"

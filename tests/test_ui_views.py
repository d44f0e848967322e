"""The UI's HTML rendering and progress tracking, without Gradio or models: markers resolve to the right
citations, spans are highlighted exactly, everything from a book is escaped."""
from __future__ import annotations

import re
from dataclasses import asdict

from bookqa.answer import Evidence, attribute_uncited, parse_citations
from bookqa.chunk import Chunk
from summarizer.tree import plan_blocks
from ui import views
from ui.tracker import IngestTracker

TEXT = ("The Keeper\n\nMarta kept the lighthouse for eleven winters. Her cat was named Pepper.\n"
        "She rowed out in the storm and saved three fishermen.\n\nTomas painted the tower white every July. "
        "He became the new keeper.")


def _chunks() -> list[Chunk]:
    cuts = [(12, TEXT.index("\n\nTomas")), (TEXT.index("Tomas"), len(TEXT))]
    return [Chunk(id=i, start=s, end=e, tokens=10, text=TEXT[s:e], chapter="Chapter One" if i == 0 else None)
            for i, (s, e) in enumerate(cuts)]


def _evidence() -> list[Evidence]:
    return [Evidence(number=i + 1, chunk=c, score=1.0 - i / 10, rank=i + 1) for i, c in enumerate(_chunks())]


def _as_json(parsed) -> list[dict]:
    return [asdict(c) for c in parsed.citations]


def _markers(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<button[^>]*class="bq-cite[^"]*"[^>]*data-cite="(\d+)"[^>]*>\[(\d+)\]</button>', html)


def test_answer_markers_resolve_to_their_citations():
    evidence = _evidence()
    answer = "Marta's cat was Pepper [1]. Tomas became the keeper [2]. The lamp came from Paris [7]."
    citations = _as_json(parse_citations(answer, evidence))
    html = views.answer_html(answer, citations, [1, 2])
    found = _markers(html)
    assert [n for _, n in found] == ["1", "2"]
    for idx, n in found:
        assert citations[int(idx)]["number"] == int(n)
    assert citations[int(found[1][0])]["chunk_id"] == 1
    # a number that was never provided is shown, struck through, not clickable
    assert '<span class="bq-cite-bad"' in html and ">[7]</span>" in html
    # the text around the markers is kept
    assert "Marta&#x27;s cat was Pepper" in html and "The lamp came from Paris" in html


def test_same_number_cited_by_two_sentences_opens_each_claims_quote():
    evidence = _evidence()
    answer = "Her cat was named Pepper [1]. She saved three fishermen [1]."
    citations = _as_json(parse_citations(answer, evidence))
    found = _markers(views.answer_html(answer, citations, [1, 2]))
    quotes = [citations[int(i)]["quote"] for i, _ in found]
    assert "Pepper" in quotes[0] and "fishermen" in quotes[1]


def test_inferred_citation_gets_a_dashed_marker_after_its_sentence():
    evidence = _evidence()
    answer = "Her cat was named Pepper."
    parsed = attribute_uncited(parse_citations(answer, evidence), evidence)
    citations = _as_json(parsed)
    assert citations and citations[0]["inferred"]
    html = views.answer_html(answer, citations, [1, 2])
    assert re.search(r'Pepper\. <button[^>]*bq-inferred[^>]*data-cite="0"', html)
    view = views.answer_view({"answer": answer, "citations": citations, "evidence": [],
                              "uncited_sentences": parsed.uncited_sentences, "warnings": []})
    assert "carry no citation" not in view  # the inferred citation covers it


def test_passage_view_highlights_the_exact_span_with_escaped_context():
    text = "x" * 50 + " <b>bold</b> {{handlebars}} ${js} `tick` " + "Quoted part here." + " after & more " + "y" * 50
    qs = text.index("Quoted")
    qe = qs + len("Quoted part here.")
    html = views.passage_view(text, start=qs - 20, end=qe + 5, mark_start=qs, mark_end=qe, heading="[1] <h>",
                              context=30)
    assert re.search(r"<mark>(.*?)</mark>", html).group(1) == "Quoted part here."
    assert f'data-start="{qs}" data-end="{qe}"' in html
    assert "<b>" not in html and "{{" not in html and "${" not in html and "`" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "&amp; more" in html and "[1] &lt;h&gt;" in html
    # the context is cut at whitespace and marked as cut
    assert "… " in html and " …" in html


def test_reflow_keeps_offsets_and_paragraphs():
    text = "one line\nwrapped here\n\nnext paragraph\nend"
    shown = views.reflowed(text, 0, len(text))
    assert len(shown) == len(text)
    assert shown == "one line wrapped here\n\nnext paragraph end"
    html = views.passage_view(text, start=0, end=len(text), mark_start=9, mark_end=21, heading="h", reflow=True)
    assert "<mark>wrapped here</mark>" in html


def test_answer_view_lists_evidence_ranked_candidates_prefix_timings_and_warnings():
    evidence = _evidence()
    answer = "Her cat was named Pepper [1]. Tomas later painted the tower and kept the light."
    parsed = parse_citations(answer, evidence)
    result = {
        "answer": answer, "citations": _as_json(parsed), "invalid_citations": [5],
        "uncited_sentences": parsed.uncited_sentences,
        "evidence": [{"number": e.number, "chunk_id": e.chunk.id, "start": e.chunk.start, "end": e.chunk.end,
                      "location": e.chunk.location, "score": e.score, "rank": e.rank} for e in evidence],
        "ranked": [{"chunk_id": 1, "rank": 1, "score": 0.9, "first_stage_rank": 2, "location": "chunk 1",
                    "snippet": "Tomas <painted>"},
                   {"chunk_id": 0, "rank": 2, "score": 0.1, "first_stage_rank": 1, "location": "Chapter One",
                    "snippet": "Marta"}],
        "prefix": "Marta keeps a lighthouse.", "prefix_summaries": ["L0-0"],
        "timings": {"search": 0.1, "rerank": 2.5, "total": 3.0}, "warnings": ["a pipeline warning"],
        "info": {"candidates": 2, "generator": "llama.cpp:x.gguf"},
    }
    html = views.answer_view(result)
    assert 'data-state="done"' in html
    assert "a pipeline warning" in html
    assert "dropped citations to passages that were not provided: [5]" in html
    assert "1 sentence(s) carry no citation" in html
    assert html.count('data-evidence="') == 2  # both passages can be opened
    assert "first stage" in html and "Tomas &lt;painted&gt;" in html and "0.9000" in html
    assert "Marta keeps a lighthouse." in html and "L0-0" in html
    assert "Timings: search 0.1 s · rerank 2.5 s · total 3.0 s" in html


def test_library_table_and_ingest_messages_escape_titles():
    rows = [{"id": "a-1", "title": "<script>x</script>", "kind": "novel", "chunks": 4, "size": "2 KB",
             "status": "chunks ✓", "ready": True}]
    html = views.library_table(rows)
    assert "<script>" not in html and "&lt;script&gt;" in html and 'data-book="a-1"' in html
    assert "ready" in html
    assert "empty" in views.library_table([])
    done = views.ingest_done("a-1", "T{{x}}", "novel", 4, 1900, ["chunks", "bm25"], [], 3.2, True)
    assert 'data-state="done"' in done and "{{" not in done and "Added" in done
    assert views.message("error", "bad <file>").startswith('<div class="bq-msg bq-error" role="alert">')


def test_tracker_reports_stages_in_order_with_eta():
    now = [100.0]
    tracker = IngestTracker(clock=lambda: now[0])
    tracker("chunking: sentences", 0, 10)
    now[0] += 1
    tracker("chunking: sentences", 10, 10)
    tracker("embedding", 0, 40)
    now[0] += 2
    tracker("embedding", 10, 40)
    rows = tracker.rows()
    assert [r["stage"] for r in rows] == ["chunking: sentences", "embedding"]
    assert rows[0]["finished"] and abs(rows[0]["seconds"] - 1.0) < 1e-9
    assert not rows[1]["finished"] and abs(rows[1]["eta"] - 6.0) < 1e-9  # 10 per 2 s, 30 left
    tracker("summaries", 0, None)  # a new stage closes the one before
    assert tracker.rows()[1]["finished"]
    assert tracker.current()["stage"] == "summaries"
    html = views.ingest_progress("Book", tracker.rows(), tracker.elapsed())
    assert 'data-state="running"' in html and "done in 1.0 s" in html and "estimating…" in html


def test_summary_tree_and_node_views():
    chunks = _chunks() + [Chunk(id=2, start=len(TEXT), end=len(TEXT), tokens=0, text="")]
    tree = plan_blocks([(c.start, c.end) for c in chunks], block=2, fanin=2)
    for n in tree.nodes():
        n.text, n.status = f"summary {n.id} <x>", "extractive"
    html = views.summary_tree(tree.levels, {"mode": "extractive"})
    assert html.index("Level 1 (root)") < html.index("Level 0")
    assert 'data-node="L0-0"' in html and 'data-node="L1-0"' in html and "&lt;x&gt;" in html
    node = tree.node("L0-0")
    detail = views.summary_node(node, chunks[node.start:node.end], reflow=True)
    assert "chunks 0–1" in detail and "Marta kept the lighthouse" in detail and "Tomas painted" in detail
    assert "no summaries" in views.summary_tree([], {})

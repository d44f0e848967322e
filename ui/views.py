"""HTML for the web UI, as pure functions of bookqa's data (no Gradio here, so they are unit-tested).

Everything that comes from a book, a question or a model is escaped with :func:`esc`. Besides the
usual HTML characters it escapes ``{``, ``}``, ``$`` and backticks: ``gr.HTML`` renders its value
through a JS template / Handlebars step, and a book may contain ``{{`` or ``${``.

Clickable things carry ``data-cite`` (an index into the answer's citations), ``data-evidence`` (a
passage number) or ``data-node`` (a summary node id); the Gradio components that show them turn a
click into an event (see ``ui.app``).
"""
from __future__ import annotations

import html
import re
from typing import Any, Iterable, Optional, Sequence

from bookqa.answer import parse_numbers, split_sentences

CONTEXT_CHARS = 300  # characters of surrounding text shown either side of a cited passage
NODE_CHUNKS_SHOWN = 12  # chunk texts listed under a selected summary

# A bracket holding only citation numbers: [1]  [1, 3]  [2-4]  【1】  ［2］ (the forms bookqa parses).
_CITE_GROUP = re.compile(r"[\[【［]\s*(\d+(?:\s*(?:[,，、;；]|[-–~～])\s*\d+)*)\s*[\]】］]")
_TEMPLATE_CHARS = str.maketrans({"{": "&#123;", "}": "&#125;", "$": "&#36;", "`": "&#96;"})


def esc(text: Any) -> str:
    """HTML-escape ``text`` (quotes too) and neutralise template characters."""
    return html.escape(str(text), quote=True).translate(_TEMPLATE_CHARS)


def message(kind: str, text: str) -> str:
    """A one-line notice: kind is ``error``, ``warn``, ``ok`` or ``info``."""
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="bq-msg bq-{esc(kind)}"{role}>{esc(text)}</div>'


def fmt_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --- library -----------------------------------------------------------------------------------------
def stage_summary(manifest: dict[str, Any]) -> str:
    """'chunks ✓ · bm25 ✓ · dense (running)' from a manifest's stage table."""
    parts = []
    for name, st in (manifest.get("stages") or {}).items():
        status = st.get("status")
        parts.append(f"{name} ✓" if status == "done" else f"{name} ({status})")
    return " · ".join(parts) or "no stages yet"


def library_table(rows: Sequence[dict[str, Any]]) -> str:
    """The book list. ``rows``: dicts with id, title, kind, chunks, size, status, ready (and for a damaged
    book damaged=True, the reason as status, and repair)."""
    if not rows:
        return message("info", "The library is empty: upload a .txt or transcript above.")
    body = []
    for r in rows:
        ready = "damaged" if r.get("damaged") else "ready" if r.get("ready") else "not ready"
        if r.get("damaged"):
            body.append(
                f'<tr data-book="{esc(r["id"])}" class="bq-damaged-row"><td class="bq-title">{esc(r["title"])}</td>'
                f'<td><code>{esc(r["id"])}</code></td><td></td><td class="bq-num">?</td>'
                f'<td class="bq-num">{esc(r.get("size", "?"))}</td><td><span class="bq-damaged">damaged</span> — '
                f'{esc(r.get("status", ""))}; {esc(r.get("repair", ""))}</td></tr>')
            continue
        body.append(
            f'<tr data-book="{esc(r["id"])}"><td class="bq-title">{esc(r["title"])}</td>'
            f'<td><code>{esc(r["id"])}</code></td><td>{esc(r.get("kind", ""))}</td>'
            f'<td class="bq-num">{esc(r.get("chunks", "?"))}</td><td class="bq-num">{esc(r.get("size", "?"))}</td>'
            f'<td><span class="bq-{ready.replace(" ", "-")}">{ready}</span> — {esc(r.get("status", ""))}</td></tr>')
    return ('<table class="bq-table bq-library"><thead><tr><th>title</th><th>id</th><th>kind</th><th>chunks</th>'
            '<th>size</th><th>status</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>")


def delete_question(book_id: str, title: str, chunks: Any) -> str:
    """The confirmation asked before a book is deleted."""
    return (f'<div class="bq-msg bq-warn" data-book="{esc(book_id)}">Delete <b>{esc(title)}</b> '
            f"(<code>{esc(book_id)}</code>, {esc(chunks)} chunks) with its indexes and summaries? "
            "This cannot be undone; adding the file again rebuilds it.</div>")


# --- ingestion progress ------------------------------------------------------------------------------
def ingest_progress(title: str, rows: Sequence[dict[str, Any]], elapsed: float) -> str:
    """Live ingestion status: one bar per reported stage with its count, rate-based ETA, or duration.
    ``rows``: dicts with stage, done, total, eta (s or None), seconds, finished."""
    lines = []
    for r in rows:
        total, done = r.get("total"), r.get("done", 0)
        if total:
            bar = f'<progress value="{min(done, total)}" max="{total}"></progress>'
            count = f"{done:,}/{total:,}"
        else:
            bar, count = "<progress></progress>", f"{done:,}"
        if r.get("finished"):
            when = f"done in {fmt_seconds(r.get('seconds'))}"
        elif r.get("eta") is not None:
            when = f"ETA {fmt_seconds(r['eta'])}"
        else:
            when = "estimating…"
        lines.append(f'<tr><td>{esc(r["stage"])}</td><td>{bar}</td><td class="bq-num">{count}</td>'
                     f"<td>{esc(when)}</td></tr>")
    table = ('<table class="bq-table bq-progress">' + "".join(lines) + "</table>") if lines else \
        '<div class="bq-muted">reading the file and loading the models…</div>'
    return (f'<div class="bq-ingest" data-state="running"><div><b>Ingesting “{esc(title)}”</b> — '
            f"{esc(fmt_seconds(elapsed))} elapsed</div>{table}</div>")


def ingest_done(book_id: str, title: str, kind: str, chunks: int, chars: int, stages_run: Sequence[str],
                stages_skipped: Sequence[str], seconds: float, created: bool) -> str:
    verb = "Added" if created else ("Updated" if stages_run else "Already in the library")
    built = f"built {', '.join(stages_run)} in {fmt_seconds(seconds)}" if stages_run else "nothing to rebuild"
    up = f"; up to date: {', '.join(stages_skipped)}" if stages_skipped else ""
    return (f'<div class="bq-msg bq-ok" data-state="done" data-book="{esc(book_id)}">{esc(verb)}: '
            f"<b>{esc(title)}</b> (<code>{esc(book_id)}</code>, {esc(kind)}) — {chunks:,} chunks, "
            f"{chars:,} characters; {esc(built + up)}. It is ready in the Ask tab.</div>")


# --- answers -----------------------------------------------------------------------------------------
def _pick_citation(number: int, end: int, citations: Sequence[dict[str, Any]]) -> Optional[int]:
    """The index of the citation of ``number`` made by the answer sentence ending at ``end`` (a number
    cited by several sentences has one citation per sentence, each recording where its sentence ends)."""
    same = [i for i, c in enumerate(citations) if c["number"] == number and not c.get("inferred")]
    here = [i for i in same if _sentence_end(citations[i]) == end]
    return (here or same or [None])[0]


def _inferred_for(end: int, citations: Sequence[dict[str, Any]], used: set[int]) -> list[int]:
    """Indexes of the inferred citations (bookqa attributed a passage to a sentence the model left
    uncited) of the answer sentence ending at ``end``."""
    return [i for i, c in enumerate(citations) if c.get("inferred") and i not in used and _sentence_end(c) == end]


def _sentence_end(citation: dict[str, Any]) -> int:
    """Where, in the answer, the sentence carrying a citation ends (-1: not recorded)."""
    return int(citation.get("answer_end", -1))


def _marker(idx: int, c: dict[str, Any]) -> str:
    if c.get("supported") is False:  # the citation check found no support: shown, never passed off as backed
        return (f'<button type="button" class="bq-cite bq-unsupported" data-cite="{idx}" title="{esc(c.get("location", ""))}'
                f' — unsupported: the citation check found nothing in this passage that backs the sentence">'
                f'[{c["number"]}]</button>')
    if c.get("inferred"):
        return (f'<button type="button" class="bq-cite bq-inferred" data-cite="{idx}" title="{esc(c.get("location", ""))}'
                f' — inferred: the model did not cite this sentence; bookqa attributed the passage that best '
                f'supports it">[{c["number"]}]</button>')
    return (f'<button type="button" class="bq-cite" data-cite="{idx}" '
            f'title="{esc(c.get("location", ""))}">[{c["number"]}]</button>')


def answer_html(answer: str, citations: Sequence[dict[str, Any]], provided: Iterable[int]) -> str:
    """The answer text with every ``[n]`` turned into a clickable marker. A number that resolves to a
    citation opens its quote; a provided passage without a resolved citation opens the passage; a
    number that was never provided is shown struck through. Inferred citations get a marker (dashed)
    after the sentence they were attributed to."""
    provided = set(provided)
    out: list[str] = []
    used: set[int] = set()
    for s, e in split_sentences(answer) or [(0, len(answer))]:
        sentence = answer[s:e]
        end = s + len(sentence.rstrip())
        pos = 0
        explicit = False
        for m in _CITE_GROUP.finditer(sentence):
            explicit = True
            out.append(esc(sentence[pos:m.start()]))
            for n in parse_numbers(m.group(1)):
                idx = _pick_citation(n, end, citations)
                if idx is not None:
                    out.append(_marker(idx, citations[idx]))
                elif n in provided:
                    out.append(f'<button type="button" class="bq-cite" data-evidence="{n}">[{n}]</button>')
                else:
                    out.append(f'<span class="bq-cite-bad" title="passage {n} was not provided; '
                               f'this citation was dropped">[{n}]</span>')
            pos = m.end()
        rest = sentence[pos:]
        inferred = [] if explicit else _inferred_for(end, citations, used)
        if inferred:
            body = rest.rstrip()
            used.update(inferred)
            out.append(esc(body) + " " + "".join(_marker(i, citations[i]) for i in inferred)
                       + esc(rest[len(body):]))
        else:
            out.append(esc(rest))
    return '<div class="bq-answer-text">' + "".join(out) + "</div>"


def streaming_answer(partial: str, status: str) -> str:
    """The answer while it is being written (markers are not clickable yet)."""
    text = esc(partial) if partial else f'<span class="bq-muted">{esc(status)}</span>'
    return (f'<div class="bq-answer" data-state="streaming"><div class="bq-answer-text">{text}'
            '<span class="bq-caret">▍</span></div></div>')


def answer_view(result: dict[str, Any]) -> str:
    """The finished answer (``AskResult.to_json()``): text with markers, warnings, passages given to
    the generator, the ranked candidates, the summary prefix and the timings."""
    citations = result.get("citations") or []
    evidence = result.get("evidence") or []
    text = (result.get("answer") or "").strip()
    parts = ['<div class="bq-answer" data-state="done">']
    parts.append(answer_html(text, citations, [e["number"] for e in evidence]) if text else
                 message("warn", "The generator returned an empty answer."))
    warnings = list(result.get("warnings") or [])
    if result.get("invalid_citations"):
        warnings.append("dropped citations to passages that were not provided: "
                        + ", ".join(f"[{n}]" for n in result["invalid_citations"]))
    inferred_claims = {c.get("claim") for c in citations if c.get("inferred")}
    uncited = [u for u in result.get("uncited_sentences") or [] if u not in inferred_claims]
    if uncited and citations:
        warnings.append(f"{len(uncited)} sentence(s) carry no citation: "
                        + " / ".join(f"“{u}”" for u in uncited[:3]))
    parts.extend(message("warn", w) for w in warnings)
    parts.append(evidence_list(evidence, citations))
    parts.append(ranked_table(result.get("ranked") or [], evidence))
    parts.append(prefix_block(result.get("prefix") or "", result.get("prefix_summaries") or []))
    parts.append(timings_line(result.get("timings") or {}, result.get("info") or {}))
    parts.append("</div>")
    return "".join(parts)


def evidence_list(evidence: Sequence[dict[str, Any]], citations: Sequence[dict[str, Any]]) -> str:
    if not evidence:
        return ""
    cited = {c["number"] for c in citations}
    unsupported = {c["number"] for c in citations if c.get("supported") is False}
    supported = {c["number"] for c in citations if c.get("supported") is True}
    items = []
    for e in evidence:
        n = e["number"]
        flag = ("cited, supported" if n in supported else "cited, unsupported" if n in unsupported
                else "cited" if n in cited else "not cited")
        items.append(
            f'<li><button type="button" class="bq-cite" data-evidence="{e["number"]}">[{e["number"]}]</button> '
            f'{esc(e.get("location", ""))} · characters {e["start"]:,}–{e["end"]:,} · QR rank {e.get("rank")} · '
            f'score {float(e.get("score", 0.0)):.4f} · <span class="bq-{flag.replace(", ", "-").replace(" ", "-")}">'
            f'{flag}</span></li>')
    return ('<div class="bq-section"><h4>Passages given to the generator</h4><ul class="bq-evidence">'
            + "".join(items) + "</ul></div>")


def ranked_table(ranked: Sequence[dict[str, Any]], evidence: Sequence[dict[str, Any]]) -> str:
    if not ranked:
        return ""
    given = {e["chunk_id"]: e["number"] for e in evidence}
    rows = []
    for r in ranked:
        n = given.get(r["chunk_id"])
        mark = f"[{n}]" if n is not None else ""
        rows.append(f'<tr class="{"bq-given" if n is not None else ""}"><td class="bq-num">{r["rank"]}</td>'
                    f'<td class="bq-num">{float(r["score"]):.4f}</td><td class="bq-num">{r["first_stage_rank"]}</td>'
                    f'<td>{esc(r.get("location", ""))}</td><td>{esc(mark)}</td><td>{esc(r.get("snippet", ""))}</td></tr>')
    return ('<details class="bq-section"><summary>Ranked candidates '
            f"({len(ranked)}; QR score, first-stage rank)</summary>"
            '<table class="bq-table bq-ranked"><thead><tr><th>rank</th><th>QR score</th><th>first stage</th>'
            '<th>location</th><th>given</th><th>text</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></details>")


def prefix_block(prefix: str, used: Sequence[str]) -> str:
    if not prefix:
        return ('<div class="bq-section bq-muted">Summary prefix: none (off, or the book has no summaries)'
                "</div>")
    return (f'<details class="bq-section"><summary>Summary prefix used by the reranker ({len(used)} '
            f'summaries: {esc(", ".join(used))})</summary><div class="bq-pre">{esc(prefix)}</div></details>')


def timings_line(timings: dict[str, float], info: dict[str, Any]) -> str:
    parts = [f"{esc(k)} {esc(fmt_seconds(v))}" for k, v in timings.items()]
    extra = []
    if info.get("candidates") is not None:
        extra.append(f"{info['candidates']} candidates")
    if info.get("generator"):
        extra.append(f"generator {info['generator']}")
    if info.get("reranked") is False:
        extra.append("not reranked")
    tail = f' <span class="bq-muted">({esc(", ".join(extra))})</span>' if extra else ""
    return f'<div class="bq-section bq-timings">Timings: {" · ".join(parts)}{tail}</div>'


# --- the reader pane ---------------------------------------------------------------------------------
def reflowed(text: str, lo: int, hi: int) -> str:
    """``text[lo:hi]`` with single line breaks (hard-wrapped prose) shown as spaces; blank lines stay.
    Same length, so character offsets still line up."""
    out = list(text[lo:hi])
    for i in range(lo, hi):
        if text[i] == "\n" and 0 < i < len(text) - 1 and text[i - 1] != "\n" and text[i + 1] != "\n":
            out[i - lo] = " "
    return "".join(out)


def passage_view(text: str, *, start: int, end: int, mark_start: int, mark_end: int, heading: str,
                 note: str = "", context: int = CONTEXT_CHARS, reflow: bool = False) -> str:
    """The passage ``text[start:end]`` with ``text[mark_start:mark_end]`` in ``<mark>`` and ``context``
    characters of the book either side (cut at whitespace), all escaped. ``reflow`` shows hard-wrapped
    prose lines as running text (novels; transcripts keep one utterance per line)."""
    n = len(text)
    start, end = max(0, min(start, n)), max(0, min(end, n))
    mark_start = max(start, min(mark_start, end))
    mark_end = max(mark_start, min(mark_end, end))
    before = _cut_left(text, max(0, start - context), start)
    after = _cut_right(text, end, min(n, end + context))
    shown = reflowed(text, before, after) if reflow else text[before:after]

    def part(lo: int, hi: int) -> str:
        return esc(shown[lo - before:hi - before])

    body = (f'<span class="bq-context">{"… " if before > 0 else ""}{part(before, start)}</span>'
            f'<span class="bq-chunk">{part(start, mark_start)}<mark>{part(mark_start, mark_end)}</mark>'
            f'{part(mark_end, end)}</span>'
            f'<span class="bq-context">{part(end, after)}{" …" if after < n else ""}</span>')
    note_html = f'<div class="bq-claim">{esc(note)}</div>' if note else ""
    return (f'<div class="bq-reader" data-start="{mark_start}" data-end="{mark_end}">'
            f'<div class="bq-reader-head">{esc(heading)}</div>{note_html}'
            f'<div class="bq-reader-text">{body}</div></div>')


def _cut_left(text: str, lo: int, hi: int) -> int:
    """Move ``lo`` forward to just after a whitespace so the context does not start mid-word."""
    if lo == 0:
        return 0
    i = lo
    while i < hi and not text[i - 1].isspace():
        i += 1
    return i if i < hi else lo


def _cut_right(text: str, lo: int, hi: int) -> int:
    if hi >= len(text):
        return len(text)
    i = hi
    while i > lo and not text[i].isspace():
        i -= 1
    return i if i > lo else hi


def citation_view(text: str, citation: dict[str, Any], reflow: bool = False) -> str:
    c = citation
    heading = (f"[{c['number']}] {c.get('location', '')} — quote characters {c['quote_start']:,}–{c['quote_end']:,} "
               f"(passage {c['start']:,}–{c['end']:,})")
    how = "Attributed by bookqa (the model did not cite it) to" if c.get("inferred") else "Cited for"
    note = f"{how}: “{c['claim']}”" if c.get("claim") else ""
    return passage_view(text, start=c["start"], end=c["end"], mark_start=c["quote_start"], mark_end=c["quote_end"],
                        heading=heading, note=note, reflow=reflow)


def evidence_view(text: str, ev: dict[str, Any], reflow: bool = False) -> str:
    heading = f"[{ev['number']}] {ev.get('location', '')} — characters {ev['start']:,}–{ev['end']:,}"
    return passage_view(text, start=ev["start"], end=ev["end"], mark_start=ev["start"], mark_end=ev["end"],
                        heading=heading, note="The whole passage given to the generator.", reflow=reflow)


READER_EMPTY = ('<div class="bq-reader bq-muted">Click a citation marker such as [1] to read the cited '
                "passage here, highlighted in its context.</div>")


# --- summaries ---------------------------------------------------------------------------------------
def summary_tree(levels: Sequence[Sequence[Any]], meta: dict[str, Any]) -> str:
    """Levels from the root down; each node is a clickable card (``data-node``)."""
    if not levels:
        return message("info", "This book has no summaries (summaries mode none, or not built yet).")
    parts = [f'<div class="bq-tree"><div class="bq-muted">mode: {esc(meta.get("mode", "?"))} · '
             f'{sum(len(lv) for lv in levels)} summaries in {len(levels)} level(s)</div>']
    for depth in range(len(levels) - 1, -1, -1):
        parts.append(f'<h4>Level {depth}{" (root)" if depth == len(levels) - 1 and len(levels) > 1 else ""}'
                     f'{" — blocks" if depth == 0 else ""}</h4><div class="bq-level">')
        for node in levels[depth]:
            snippet = " ".join((node.text or "").split())
            if len(snippet) > 220:
                snippet = snippet[:219] + "…"
            parts.append(f'<button type="button" class="bq-node" data-node="{esc(node.id)}">'
                         f'<span class="bq-node-id">{esc(node.id)} · chunks {node.start}–{node.end - 1}</span>'
                         f'<span class="bq-node-text">{esc(snippet) or "(empty)"}</span></button>')
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def summary_node(node: Any, chunks: Sequence[Any], shown: int = NODE_CHUNKS_SHOWN, reflow: bool = False) -> str:
    """One summary with its chunk range, character span, children and the chunk texts it covers."""
    head = (f'<div class="bq-reader-head">{esc(node.id)} — level {node.level}, chunks {node.start}–{node.end - 1}, '
            f"characters {node.char_start:,}–{node.char_end:,} · status {esc(node.status)}</div>")
    kids = f'<div class="bq-muted">children: {esc(", ".join(node.children))}</div>' if node.children else ""
    events = ""
    if node.events:
        events = "<ul>" + "".join(f"<li>{esc(ev.get('summary', ''))}</li>" for ev in node.events) + "</ul>"
    items = []
    for c in chunks[:shown]:
        body = reflowed(c.text, 0, len(c.text)) if reflow else c.text
        items.append(f'<div class="bq-node-chunk"><div class="bq-muted">{esc(c.location)} · '
                     f'characters {c.start:,}–{c.end:,}</div><div class="bq-pre">{esc(body)}</div></div>')
    more = (f'<div class="bq-muted">… and {len(chunks) - shown} more chunks</div>'
            if len(chunks) > shown else "")
    return (f'<div class="bq-reader bq-summary" data-node="{esc(node.id)}">{head}{kids}'
            f'<div class="bq-pre bq-summary-text">{esc(node.text) or "(empty)"}</div>{events}'
            f"<h4>Source chunks</h4>{''.join(items)}{more}</div>")

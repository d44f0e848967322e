"""The bookqa web UI (Gradio): upload and ingest texts, ask questions with clickable citations, browse
summaries, and choose settings per request.

Only bookqa's public API is used (``Library``, ``Book``, ``pipeline.ask``, ``summaries.load_summaries``).
Settings chosen in the page are applied per request with ``Settings.replace`` (never by mutating a
shared object). Ingestion and answering run in separate concurrency groups, so a long ingestion does
not hold up questions about other books; the reranker and generator are loaded once per process by the
pipeline and serialise on their own locks.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from bookqa.errors import BookQAError, BrokenBookError, ConfigError, InputError
from bookqa.library import Library
from bookqa.settings import Settings
from bookqa.store import MANIFEST, Book

from . import views
from .jobs import stream_answer, stream_ingest
from .style import CITE_CLICK_JS, CSS, NODE_CLICK_JS, READER_SCROLL_JS

log = logging.getLogger("bookqa.ui")

KINDS = ("auto", "novel", "transcript")
LIST_REFRESH_S = 5.0  # how often a page checks whether the library changed elsewhere
SUMMARY_MODES = ("extractive", "llm", "none")


# --- library helpers ---------------------------------------------------------------------------------
def is_ready(book: Book) -> bool:
    """Chunked, and every stage recorded so far finished (a crashed or running stage says 'running')."""
    stages = book.manifest.get("stages") or {}
    return stages.get("chunks", {}).get("status") == "done" and all(
        st.get("status") == "done" for st in stages.values())


def book_rows(library: Library) -> list[dict[str, Any]]:
    """Every book, damaged ones included (marked ``damaged`` with the reason and the repair), so a damaged
    book is seen and can be deleted or repaired while the others keep working."""
    rows = []
    for b in library.books():
        try:
            m = b.manifest
        except (OSError, ValueError):  # a book being deleted or written right now
            continue
        stages = m.get("stages") or {}
        rows.append({"id": b.id, "title": b.title, "kind": b.kind,
                     "chunks": stages.get("chunks", {}).get("chunks", "?"),
                     "size": _size(b.dir / "text.txt"),
                     "status": views.stage_summary(m), "ready": is_ready(b)})
    for d in library.broken():
        rows.append({"id": d.id, "title": d.title, "kind": "", "chunks": "?", "size": _size(d.dir / "text.txt"),
                     "status": d.reason, "ready": False, "damaged": True, "repair": repair_hint(d)})
    return sorted(rows, key=lambda r: r["title"].lower())


def repair_hint(broken) -> str:
    """How a web user repairs a damaged book: adding the same file again rebuilds only what is damaged
    (the command is the server's; the upload is the user's way to the same repair)."""
    return f"add the same file again to repair it (on the server: {broken.repair})"


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:,.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def _size(path: Path) -> str:
    try:
        return _human(path.stat().st_size)
    except OSError:
        return "?"


def library_stamp(library: Library) -> tuple:
    """Changes whenever a book is added, deleted or rebuilt (each stage rewrites the manifest), by this
    server or by a `bookqa` command: one stat per book, cheap enough to poll."""
    try:
        dirs = sorted(library.root.iterdir())
    except OSError:
        return ()
    stamp = []
    for d in dirs:
        try:
            stamp.append((d.name, (d / MANIFEST).stat().st_mtime_ns))
        except OSError:  # not a book (yet), or being deleted right now
            continue
    return tuple(stamp)


def book_choices(rows: list[dict[str, Any]], ready_only: bool) -> list[tuple[str, str]]:
    return [(f"{r['title']} ({r['id']})", r["id"]) for r in rows if r["ready"] or not ready_only]


def _pick(current: Optional[str], choices: list[tuple[str, str]], prefer: Optional[str] = None) -> Optional[str]:
    ids = [c[1] for c in choices]
    for candidate in (prefer, current):
        if candidate in ids:
            return candidate
    return ids[0] if ids else None


def _error_text(exc: BaseException) -> str:
    """A user-facing one-liner: bookqa's own message, or a short note for anything unexpected."""
    if isinstance(exc, BookQAError):
        return str(exc)
    log.exception("unexpected error in the web UI", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {exc}); details are in the server log"


# --- the app -----------------------------------------------------------------------------------------
def build_app(settings: Optional[Settings] = None) -> gr.Blocks:
    base = settings or Settings.from_env()
    library = Library(base)

    def request_settings(generator: str, base_url: str, model: str, k: Any, top_n: Any,
                         summaries: Optional[str] = None, style: Optional[str] = None) -> Settings:
        """The base settings with this page's choices applied (ConfigError on bad values)."""
        return base.replace(generator=generator or None, base_url=(base_url or "").strip() or None,
                            generator_model=(model or "").strip() or None,
                            top_k=int(k) if k else None, top_n=int(top_n) if top_n else None,
                            summaries=summaries or None, answer_style=style or None)

    def lists(prefer: Optional[str] = None, ask_current: Optional[str] = None,
              sum_current: Optional[str] = None, del_current: Optional[str] = None):
        try:
            rows = book_rows(library)
        except BookQAError as exc:  # the home itself cannot be read: say so, keep the page usable
            return (views.message("error", str(exc)), gr.Dropdown(choices=[], value=None),
                    gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None))
        ready = book_choices(rows, ready_only=True)
        every = book_choices(rows, ready_only=False)
        return (views.library_table(rows),
                gr.Dropdown(choices=ready, value=_pick(ask_current, ready, prefer)),
                gr.Dropdown(choices=ready, value=_pick(sum_current, ready, prefer)),
                # never preselected: deleting takes an explicit choice of book
                gr.Dropdown(choices=every, value=del_current if del_current in [c[1] for c in every] else None))

    # --- handlers ------------------------------------------------------------------------------------
    def on_load():
        return lists()

    def on_ingest(file_path, title, kind, generator, base_url, model, k, top_n, summaries):
        skip = (gr.skip(),) * 4
        if not file_path:
            yield (views.message("error", "Choose a .txt or transcript .json file to upload first."), *skip)
            return
        path = Path(file_path)
        try:
            s = request_settings(generator, base_url, model, k, top_n, summaries)
            size = path.stat().st_size
            if size > s.max_upload_bytes:
                raise InputError(f"{path.name} is {_human(size)}; the upload limit is {_human(s.max_upload_bytes)} "
                                 f"(BOOKQA_MAX_UPLOAD_MB={s.max_upload_mb:g})")
            shown_title = (title or "").strip() or path.stem
            report = None
            for update in stream_ingest(s, path, (title or "").strip() or None,
                                        None if kind in (None, "", "auto") else kind):
                if update.report is None:
                    yield (views.ingest_progress(shown_title, update.tracker.rows(), update.tracker.elapsed()),
                           *skip)
                report = update.report
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the page
            # bookqa names the file by its path; the server's upload directory means nothing to the user
            reason = _error_text(exc).replace(str(path), path.name)
            yield (views.message("error", f"Could not ingest {path.name}: {reason}"), *lists())
            return
        book = report.book
        done = views.ingest_done(book.id, book.title, book.kind, len(book.chunks), len(book.text),
                                 report.stages_run, report.stages_skipped, report.seconds, report.created)
        yield (done, *lists(prefer=book.id))

    # Deleting takes two clicks: "Delete book" asks about the chosen book by name, "Yes, delete it" deletes
    # exactly that one (kept in pending_delete, so changing the dropdown meanwhile cannot redirect it).
    no_question = (gr.Row(visible=False), "", None)  # confirmation row, its text, pending_delete

    def on_delete_request(book_id):
        if not book_id:
            return (views.message("error", "Choose a book to delete."), *no_question)
        try:
            book = library.resolve(book_id)
            chunks = (book.manifest.get("stages") or {}).get("chunks", {}).get("chunks", "?")
        except BrokenBookError as exc:  # a damaged book can always be deleted
            book, chunks = exc.broken, "?"
        except Exception as exc:  # noqa: BLE001
            return (views.message("error", f"Could not delete: {_error_text(exc)}"), *no_question)
        return "", gr.Row(visible=True), views.delete_question(book.id, book.title, chunks), book.id

    def on_delete(book_id, ask_current, sum_current):
        if not book_id:
            return (views.message("error", "Choose a book to delete."), *lists(), *no_question)
        try:
            book = library.remove(book_id)
        except Exception as exc:  # noqa: BLE001
            return (views.message("error", f"Could not delete: {_error_text(exc)}"), *lists(), *no_question)
        from bookqa.retrieve import clear_cache

        clear_cache()  # a re-ingested book of the same id must not reuse the deleted indexes
        return (views.message("ok", f"Deleted “{book.title}” ({book.id})."),
                *lists(ask_current=ask_current, sum_current=sum_current), *no_question)

    def on_delete_cancel():
        return (views.message("info", "Nothing was deleted."), *no_question)

    def forget_delete_question():  # another book was chosen: the question asked is no longer the one shown
        return no_question

    def on_tick(stamp, ask_current, sum_current, del_current):
        """Refresh the lists when the library changed (another page or a `bookqa` command added, rebuilt or
        deleted a book); otherwise leave the page alone."""
        now = library_stamp(library)
        if now == stamp:
            return (gr.skip(),) * 5
        return (now, *lists(ask_current=ask_current, sum_current=sum_current, del_current=del_current))

    def on_refresh(ask_current, sum_current, del_current):
        return lists(ask_current=ask_current, sum_current=sum_current, del_current=del_current)

    def on_ask(book_id, question, generator, base_url, model, k, top_n, use_prefix, rerank, style=None):
        if not book_id:
            yield (views.message("error", "Choose a book first (upload one in the Library tab)."), gr.skip(), None)
            return
        try:
            s = request_settings(generator, base_url, model, k, top_n, style=style)
            book = library.resolve(book_id)
            if not is_ready(book):
                raise InputError(f"“{book.title}” is still being ingested; ask again when it is ready")
            for update in stream_answer(book, question, s, use_prefix=bool(use_prefix), rerank=bool(rerank)):
                if update.result is None:
                    yield views.streaming_answer(update.text, update.status), views.READER_EMPTY, None
                else:
                    result = update.result.to_json()
                    yield views.answer_view(result), _first_citation(book, result), result
        except BrokenBookError as exc:
            d = exc.broken
            text = (f"“{d.title}” ({d.id}) is damaged: {d.reason}; {repair_hint(d)}" if d is not None
                    else str(exc))
            yield views.message("error", text), views.READER_EMPTY, None
        except Exception as exc:  # noqa: BLE001
            yield views.message("error", _error_text(exc)), views.READER_EMPTY, None

    def on_cite(result, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        if not result:
            return views.message("info", "Ask a question first.")
        try:
            book = library.resolve(result["book_id"])
            reflow = book.kind == "novel"
            if data.get("cite") not in (None, ""):
                return views.citation_view(book.text, result["citations"][int(data["cite"])], reflow)
            if data.get("evidence") not in (None, ""):
                n = int(data["evidence"])
                ev = next(e for e in result["evidence"] if e["number"] == n)
                return views.evidence_view(book.text, ev, reflow)
        except (BookQAError, LookupError, ValueError, StopIteration) as exc:
            return views.message("error", f"Cannot show that passage: {_error_text(exc)}")
        return gr.skip()

    def on_summary_book(book_id):
        if not book_id:
            return views.message("info", "Choose a book."), ""
        try:
            from bookqa.summaries import load_summaries

            book = library.resolve(book_id)
            tree = load_summaries(book)
            if tree is None:
                return views.summary_tree([], {}), ""
            return views.summary_tree(tree.levels, tree.meta), ""
        except Exception as exc:  # noqa: BLE001
            return views.message("error", _error_text(exc)), ""

    def on_node(book_id, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        try:
            from bookqa.summaries import load_summaries

            book = library.resolve(book_id)
            tree = load_summaries(book)
            if tree is None:
                return views.message("info", "This book has no summaries.")
            node = tree.node(str(data.get("node")))
            return views.summary_node(node, book.chunks[node.start:node.end], reflow=book.kind == "novel")
        except KeyError:
            return views.message("error", "That summary no longer exists (the book was re-ingested).")
        except Exception as exc:  # noqa: BLE001
            return views.message("error", _error_text(exc))

    # --- layout --------------------------------------------------------------------------------------
    with gr.Blocks(title="bookqa", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.HTML('<div class="bq-header"><h2 style="margin:0">bookqa</h2><div class="bq-muted">Ask questions '
                "about long texts; every answer cites the exact passages it rests on.</div></div>")
        result_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Library", id="library"):
                with gr.Row():
                    with gr.Column(scale=2):
                        upload = gr.File(label="Text to add (.txt novel or transcript, LoCoMo .json; up to "
                                               f"{_human(base.max_upload_bytes)})",
                                         file_types=[".txt", ".json"], type="filepath", elem_id="upload")
                    with gr.Column(scale=2):
                        title_box = gr.Textbox(label="Title (optional)", elem_id="title",
                                               placeholder="default: the Gutenberg title or the file name")
                        kind_radio = gr.Radio(list(KINDS), value="auto", label="Kind", elem_id="kind")
                        ingest_btn = gr.Button("Add to library", variant="primary", elem_id="ingest-button")
                ingest_status = gr.HTML(elem_id="ingest-status")
                gr.Markdown("### Books")
                library_html = gr.HTML(elem_id="library-table")
                with gr.Row():
                    delete_book = gr.Dropdown(label="Book", choices=[], elem_id="delete-book", scale=3)
                    delete_btn = gr.Button("Delete book", variant="stop", elem_id="delete-button", scale=1)
                    refresh_btn = gr.Button("Refresh", elem_id="refresh-button", scale=1)
                with gr.Row(visible=False, elem_id="delete-confirm") as confirm_row:
                    confirm_text = gr.HTML(elem_id="delete-question")
                    confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="delete-yes", scale=0)
                    cancel_btn = gr.Button("Cancel", elem_id="delete-no", scale=0)
                delete_status = gr.HTML(elem_id="delete-status")
                pending_delete = gr.State(None)
                seen_library = gr.State(None)  # library_stamp of the lists this page shows
                lists_timer = gr.Timer(LIST_REFRESH_S)
            with gr.Tab("Ask", id="ask"):
                with gr.Row():
                    with gr.Column(scale=3):
                        ask_book = gr.Dropdown(label="Book", choices=[], elem_id="ask-book")
                        question = gr.Textbox(label="Question", lines=2, elem_id="question",
                                              placeholder="e.g. Who rescued the fishermen?")
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask-button")
                        answer = gr.HTML(elem_id="answer", js_on_load=CITE_CLICK_JS)
                    with gr.Column(scale=2):
                        gr.Markdown("### Cited passage")
                        reader = gr.HTML(views.READER_EMPTY, elem_id="reader", js_on_load=READER_SCROLL_JS)
            with gr.Tab("Summaries", id="summaries"):
                sum_book = gr.Dropdown(label="Book", choices=[], elem_id="summary-book")
                with gr.Row():
                    with gr.Column(scale=3):
                        tree_html = gr.HTML(elem_id="summary-tree", js_on_load=NODE_CLICK_JS)
                    with gr.Column(scale=2):
                        node_html = gr.HTML(elem_id="summary-node")
            with gr.Tab("Settings", id="settings"):
                gr.Markdown("Applied to each request from this page; the server's defaults are unchanged.")
                with gr.Row():
                    gen_radio = gr.Radio(["local", "remote"], value=base.generator, label="Generator",
                                         elem_id="generator")
                    base_url_box = gr.Textbox(value=base.base_url, label="Remote base URL (OpenAI-compatible)",
                                              elem_id="base-url")
                    model_box = gr.Textbox(value=base.generator_model, label="Generator model",
                                           elem_id="generator-model")
                with gr.Row():
                    k_slider = gr.Slider(1, max(100, base.top_k), value=base.top_k, step=1, label="K: candidates to rerank",
                                         elem_id="top-k")
                    n_slider = gr.Slider(1, 10, value=base.top_n, step=1, label="Passages given to the generator",
                                         elem_id="top-n")
                with gr.Row():
                    prefix_box = gr.Checkbox(value=True, label="Summary prefix for the reranker", elem_id="use-prefix")
                    rerank_box = gr.Checkbox(value=True, label="QR rerank", elem_id="rerank")
                    summaries_radio = gr.Radio(list(SUMMARY_MODES), value=base.summaries,
                                               label="Summaries for new ingests", elem_id="summaries-mode")
                    style_radio = gr.Radio(["short", "prose"], value=base.answer_style,
                                           label="Answer style (short: the answer phrase; prose: sentences)",
                                           elem_id="answer-style")

        list_outputs = [library_html, ask_book, sum_book, delete_book]
        settings_inputs = [gen_radio, base_url_box, model_box, k_slider, n_slider]
        demo.load(on_load, outputs=list_outputs, api_visibility="private")
        ingest_btn.click(on_ingest, inputs=[upload, title_box, kind_radio, *settings_inputs, summaries_radio],
                         outputs=[ingest_status, *list_outputs], concurrency_id="ingest", concurrency_limit=1,
                         show_progress="minimal", api_visibility="private")
        confirm_outputs = [confirm_row, confirm_text, pending_delete]
        delete_btn.click(on_delete_request, inputs=[delete_book], outputs=[delete_status, *confirm_outputs],
                         api_visibility="private")
        confirm_btn.click(on_delete, inputs=[pending_delete, ask_book, sum_book],
                          outputs=[delete_status, *list_outputs, *confirm_outputs], api_visibility="private")
        cancel_btn.click(on_delete_cancel, outputs=[delete_status, *confirm_outputs], api_visibility="private")
        delete_book.change(forget_delete_question, outputs=confirm_outputs, api_visibility="private")
        lists_timer.tick(on_tick, inputs=[seen_library, ask_book, sum_book, delete_book],
                         outputs=[seen_library, *list_outputs], concurrency_id="lists", show_progress="hidden",
                         api_visibility="private")
        refresh_btn.click(on_refresh, inputs=[ask_book, sum_book, delete_book], outputs=list_outputs,
                          api_visibility="private")
        ask_inputs = [ask_book, question, *settings_inputs, prefix_box, rerank_box, style_radio]
        ask_outputs = [answer, reader, result_state]
        # Ask is disabled from the click until the answer (or its error) is shown. While the question waits
        # for a free answering slot, Gradio's queue status (position, seconds waited / expected) shows on
        # the answer pane ("full": the "minimal" status is not drawn over an answer pane still empty).
        # Enter in the question box is locked with the button: a second question cannot queue behind the first.
        asking = gr.on([ask_btn.click, question.submit], lock_ask, outputs=[ask_btn, question], queue=False,
                       api_visibility="private")
        asking.then(on_ask, inputs=ask_inputs, outputs=ask_outputs, concurrency_id="ask",
                    concurrency_limit=base.ui_ask_concurrency, show_progress="full", show_progress_on=[answer],
                    api_visibility="private"
                    ).then(unlock_ask, outputs=[ask_btn, question], queue=False, api_visibility="private")
        answer.cite(on_cite, inputs=[result_state], outputs=[reader], concurrency_id="view",
                    show_progress="hidden", api_visibility="private")
        sum_book.change(on_summary_book, inputs=[sum_book], outputs=[tree_html, node_html], concurrency_id="view",
                        api_visibility="private")
        tree_html.node(on_node, inputs=[sum_book], outputs=[node_html], concurrency_id="view",
                       show_progress="hidden", api_visibility="private")
    return demo


def lock_ask() -> tuple[gr.Button, gr.Textbox]:
    return gr.Button(interactive=False), gr.Textbox(interactive=False)


def unlock_ask() -> tuple[gr.Button, gr.Textbox]:
    return gr.Button(interactive=True), gr.Textbox(interactive=True)


def _first_citation(book: Book, result: dict[str, Any]) -> str:
    """The reader pane after an answer: the first citation, so the evidence is in view at once."""
    if result.get("citations"):
        return views.citation_view(book.text, result["citations"][0], reflow=book.kind == "novel")
    return views.READER_EMPTY


def theme() -> gr.themes.Base:
    """The default theme with system fonts: nothing is fetched from a font CDN (offline machines)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def launch(settings: Optional[Settings] = None, *, host: Optional[str] = None, port: Optional[int] = None,
           auth: Optional[tuple[str, str]] = None, block: bool = True, quiet: bool = False):
    """Build and serve the app (``bookqa ui``). ``block=False`` returns once the server is up."""
    settings = settings or Settings.from_env()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_app(settings)
    demo.queue(default_concurrency_limit=4)
    host, port = host or settings.ui_host, port or settings.ui_port
    try:
        demo.launch(server_name=host, server_port=port, auth=auth,
                    auth_message="bookqa: sign in" if auth else None, prevent_thread_lock=not block, quiet=quiet,
                    # the page refuses a larger file before sending it, naming this same limit
                    show_error=False, max_file_size=settings.max_upload_bytes, ssr_mode=False,
                    footer_links=[], theme=theme(), css=CSS)
    except OSError as exc:
        if "port" not in str(exc).lower():
            raise
        # taken since `bookqa ui` checked it; Gradio's own hint names a variable that an explicit port overrides
        raise ConfigError(f"port {port} on {host} is already in use (another bookqa ui?); choose another "
                          "with --port N or BOOKQA_UI_PORT=N") from None
    return demo

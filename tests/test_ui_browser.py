"""The web UI in a real headless Chromium (Playwright, sync API) against `bookqa ui` run as a subprocess
on a free loopback port, with the real embedded models (MiniLM, the QR reranker, the llama.cpp
generator) and small settings so it stays affordable on two CPU cores.

Screenshots of every step go to test-artifacts/ui/ (gitignored); the server log goes there too.
Set BOOKQA_UPDATE_SCREENSHOT=1 to also refresh docs/screenshot-ask.png (the README's picture).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, stop_server

ROOT = Path(__file__).resolve().parent.parent
STORY = ROOT / "tests" / "fixtures" / "ui" / "lighthouse.txt"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("BOOKQA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_UPLOAD_MB = 0.01  # 10 KB: the story (2 KB) fits, the "too large" upload (20 KB) does not
INGEST_TIMEOUT_MS = 300_000
ANSWER_TIMEOUT_MS = 420_000

try:
    from playwright import sync_api
except ImportError:
    sync_api = None
# Skipped per test (not the whole module at import), so every skip is counted and the run's last line
# says that the browser tests did not run, and how to enable them (tests/conftest.py).
if sync_api is None:
    _MISSING = "playwright is not installed; enable them with: .venv/bin/pip install -e '.[dev]'"
elif not Path(CHROMIUM).exists():
    _MISSING = f"no Chromium at {CHROMIUM}; enable them with: sudo apt-get install -y chromium"
else:
    _MISSING = ""
pytestmark = [pytest.mark.browser, pytest.mark.skipif(bool(_MISSING), reason=_MISSING)]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bookqa ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"bookqa ui did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`bookqa ui` on a free port with a throw-away home and the shared model cache."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
        "BOOKQA_HOME": str(tmp / "home"), "BOOKQA_MODEL_CACHE": os.environ["BOOKQA_MODEL_CACHE"],
        "BOOKQA_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB), "BOOKQA_TOP_K": "8", "BOOKQA_TOP_N": "2",
        "BOOKQA_ANSWER_MAX_TOKENS": "64", "BOOKQA_SUMMARIES": "extractive", "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("BOOKQA_UI_AUTH", None)
    log = ARTIFACTS / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bookqa", "ui", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, log)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.locator("#upload").wait_for(timeout=60_000)
    return context, page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _upload(page, path: Path, title: str = "") -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))
    # the file is uploaded to the server as soon as it is chosen; wait until the component lists it
    try:
        page.locator(f'#upload a[download="{path.name}"]').wait_for(timeout=180_000)
    except sync_api.TimeoutError:
        _shot(page, f"upload-failed-{path.stem}")
        raise
    if title:
        page.locator("#title textarea, #title input").first.fill(title)
    page.locator("#ingest-button").click()


def _expect_error(page, shot: str, pattern: str) -> str:
    box = page.locator("#ingest-status .bq-error")
    box.wait_for(timeout=180_000)
    _shot(page, shot)
    text = box.inner_text()
    assert re.search(pattern, text, re.I), text
    assert "Traceback" not in page.content()
    return text


# --- upload errors are messages in the page, never a crash -------------------------------------------
def test_upload_empty_file(server, browser, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    context, page = _open(browser, server)
    try:
        _upload(page, empty)
        _expect_error(page, "error-empty", r"empty\.txt.*empty")
    finally:
        context.close()


def test_upload_binary_file(server, browser, tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    context, page = _open(browser, server)
    try:
        _upload(page, binary)
        _expect_error(page, "error-binary", r"image\.txt.*binary")
    finally:
        context.close()


def test_upload_too_large(server, browser, tmp_path):
    """The page states the limit and refuses a larger file before sending it, naming the same number
    (the server checks again: tests/test_ui_app.py)."""
    big = tmp_path / "big.txt"
    big.write_text("All work and no play makes Jack a dull boy.\n" * 500)  # ~22 KB > 10 KB
    context, page = _open(browser, server)
    try:
        assert "up to 10.2 KB" in page.locator("#upload").inner_text()
        page.locator("#upload input[type=file]").set_input_files(str(big))
        toast = page.locator("[data-testid=toast-body]", has_text="maximum allowed size")
        toast.wait_for(timeout=30_000)
        _shot(page, "error-too-large")
        assert 'exceed the maximum allowed size of 10.2 Kb: "big.txt"' in toast.inner_text()
        assert page.locator('#upload a[download="big.txt"]').count() == 0  # nothing was sent
    finally:
        context.close()


def test_a_failed_question_gives_the_button_back(server, browser):
    """Ask is enabled again after its question, also when that ends in an error (here: no book chosen, or
    an empty question, whichever the page has)."""
    context, page = _open(browser, server)
    try:
        _ask(page, "   ")
        page.locator("#answer .bq-error").wait_for(timeout=60_000)
        assert re.search(r"Choose a book first|question is empty", page.locator("#answer").inner_text())
        sync_api.expect(page.locator("#ask-button")).to_be_enabled(timeout=30_000)
    finally:
        context.close()


# --- upload, ingest with progress, ask, click a citation ---------------------------------------------
@pytest.fixture(scope="module")
def ingested(server, browser):
    """The story uploaded through the Library tab; returns the book id the page reported."""
    context, page = _open(browser, server)
    try:
        _shot(page, "01-start")
        _upload(page, STORY, title="The Keeper of Gull Rock")
        # live progress: one row per stage bookqa reports, with a bar and a count / ETA
        row = page.locator("#ingest-status .bq-progress tr").first
        row.wait_for(timeout=INGEST_TIMEOUT_MS)
        _shot(page, "02-ingesting")
        assert re.search(r"chunking|bm25|embedding|summar|tokenizer", row.inner_text())
        done = page.locator("#ingest-status [data-state=done]")
        done.wait_for(timeout=INGEST_TIMEOUT_MS)
        _shot(page, "03-ingested")
        book_id = done.get_attribute("data-book")
        assert book_id and book_id.startswith("the-keeper-of-gull-rock-")
        assert page.locator(f'#library-table tr[data-book="{book_id}"]').get_by_text("ready").first.is_visible()
        return book_id
    finally:
        context.close()


# Gradio's queue status on the answer pane ("queue: 2/2 | 3.1/40.0s"), drawn on screen: present with a
# size, and what the page shows at its own position (not covered, not clipped away).
_QUEUE_SHOWN = """() => {
    const t = document.querySelector('#answer .progress-text');
    if (!t || !/queue: \\d+\\/\\d+/.test(t.innerText)) return false;
    const r = t.getBoundingClientRect();
    return r.width > 0 && t.contains(document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2));
}"""


def _first_showing(pages, script: str, timeout_s: float):
    """The first of ``pages`` where ``script`` is true within ``timeout_s`` (or None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for page in pages:
            if page.evaluate(script):
                return page
        time.sleep(0.2)
    return None


# The highlighted quote's first line (a long quote may run past the box) and the part of the reader's text
# box that is on screen, in viewport pixels.
_MARK_GEOMETRY = """() => {
    const mark = document.querySelector('#reader mark');
    const b = mark.closest('.bq-reader-text').getBoundingClientRect(), m = mark.getClientRects()[0];
    return {mark: [m.top, m.bottom], shown: [Math.max(b.top, 0), Math.min(b.bottom, window.innerHeight)]};
}"""


def _assert_mark_in_view(page) -> None:
    """The highlight lies within the visible part of the reader pane (once the pane has scrolled)."""
    try:
        page.wait_for_function(f"() => {{ const g = ({_MARK_GEOMETRY})(); "
                               "return g.shown[0] - 1 <= g.mark[0] && g.mark[1] <= g.shown[1] + 1; }",
                               timeout=10_000)
    except sync_api.TimeoutError:
        g = page.evaluate(_MARK_GEOMETRY)
        pytest.fail(f"the highlight ({g['mark'][0]:.0f}-{g['mark'][1]:.0f} px) is outside the visible part of "
                    f"the reader ({g['shown'][0]:.0f}-{g['shown'][1]:.0f} px)")


def _ask(page, question: str) -> None:
    _tab(page, "Ask")
    page.locator("#question textarea").fill(question)
    page.locator("#ask-button").click()


def test_ask_and_click_citation(server, browser, ingested):
    story = STORY.read_text(encoding="utf-8")
    context, page = _open(browser, server)
    try:
        _ask(page, "What was the name of Marta's cat?")
        page.locator("#answer [data-state=streaming]").wait_for(timeout=60_000)
        _shot(page, "04-asking")
        done = page.locator("#answer [data-state=done]")
        done.wait_for(timeout=ANSWER_TIMEOUT_MS)
        _shot(page, "05-answered")
        answer = page.locator("#answer .bq-answer-text").inner_text()
        assert answer.strip()
        markers = page.locator("#answer .bq-answer-text button.bq-cite")
        assert markers.count() >= 1, f"no citation marker in the answer: {answer!r}"
        assert re.fullmatch(r"\[\d+\]", markers.first.inner_text())
        # the evidence list and timings are shown
        assert page.locator("#answer .bq-evidence li").count() >= 1
        assert "Timings:" in page.locator("#answer .bq-timings").inner_text()

        # a passage button shows the whole passage given to the generator...
        page.locator("#answer .bq-evidence button.bq-cite").first.click()
        page.locator("#reader .bq-reader-head", has_text="characters").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => { const m = document.querySelector('#reader mark');"
            " return m && m.closest('.bq-reader').querySelector('.bq-claim')?.innerText.includes('whole passage'); }",
            timeout=60_000)
        # ...and the answer's marker shows the exact supporting sentence, highlighted in its context
        markers.first.click()
        page.wait_for_function(
            "() => { const c = document.querySelector('#reader .bq-claim')?.innerText || '';"
            " return c.startsWith('Cited for') || c.startsWith('Attributed by bookqa'); }",
            timeout=60_000)
        mark = page.locator("#reader mark")
        assert mark.is_visible()
        quote = mark.inner_text()
        assert quote.strip()
        assert " ".join(quote.split()) in " ".join(story.split())
        span = page.locator("#reader .bq-reader")
        start, end = int(span.get_attribute("data-start")), int(span.get_attribute("data-end"))
        # the highlighted span is exact in the stored text (the reader shows hard-wrapped lines reflowed)
        assert " ".join(story[start:end].split()) == " ".join(quote.split())
        assert page.locator("#reader .bq-context").first.inner_text().strip()  # surrounding context shown
        _assert_mark_in_view(page)

        # a short reader pane (a small window): the highlight starts below its fold, and showing the
        # passage scrolls the pane to it
        page.add_style_tag(content="#reader .bq-reader-text { max-height: 60px !important; }")
        later = page.locator("#answer .bq-evidence li", has_text=re.compile(r"characters [1-9][\d,]*–"))
        assert later.count() >= 1, "every passage given starts at character 0"
        later.first.locator("button.bq-cite").click()
        page.wait_for_function(
            "() => document.querySelector('#reader .bq-claim')?.innerText.includes('whole passage')"
            " && document.querySelector('#reader .bq-reader-text').scrollTop > 0", timeout=60_000)
        _assert_mark_in_view(page)
        markers.first.click()
        page.wait_for_function(
            "() => (document.querySelector('#reader .bq-claim')?.innerText || '').match(/^(Cited for|Attributed)/)",
            timeout=60_000)
        _assert_mark_in_view(page)
        _shot(page, "06b-citation-scrolled")
        page.locator("#answer").scroll_into_view_if_needed()
        _shot(page, "06-citation")
        if os.environ.get("BOOKQA_UPDATE_SCREENSHOT"):
            page.screenshot(path=str(ROOT / "docs" / "screenshot-ask.png"), full_page=False)
    finally:
        context.close()


def test_three_users_ask_at_once(server, browser, ingested):
    """Three pages ask at the same time: two are answered at once (the ask group's limit), the third waits
    and sees its place in the queue; each page's Ask stays disabled until its own answer is shown."""
    pages = [_open(browser, server) for _ in range(3)]
    try:
        questions = ["Who became the new keeper of Gull Rock?", "What did the captain of the steamer bring?",
                     "What was the name of Marta's cat?"]
        for (_, page), q in zip(pages, questions):
            _ask(page, q)
        for _, page in pages:
            sync_api.expect(page.locator("#ask-button")).to_be_disabled(timeout=10_000)
            # the question box too: Enter cannot queue a second question behind the first
            sync_api.expect(page.locator("#question textarea")).to_be_disabled(timeout=10_000)
        queued = _first_showing([page for _, page in pages], _QUEUE_SHOWN, timeout_s=60)
        assert queued is not None, "no page showed its place in the queue"
        _shot(queued, "07-queued")
        assert queued.locator("#ask-button").is_disabled()
        for i, (_, page) in enumerate(pages):
            page.locator("#answer [data-state=done], #answer .bq-error").first.wait_for(timeout=ANSWER_TIMEOUT_MS)
            _shot(page, f"07-concurrent-{i}")
            assert page.locator("#answer .bq-error").count() == 0, page.locator("#answer").inner_text()
            assert page.locator("#answer .bq-answer-text").inner_text().strip()
            sync_api.expect(page.locator("#ask-button")).to_be_enabled(timeout=30_000)
            sync_api.expect(page.locator("#question textarea")).to_be_enabled(timeout=30_000)
    finally:
        for context, _ in pages:
            context.close()


def test_summaries_tab(server, browser, ingested):
    context, page = _open(browser, server)
    try:
        _tab(page, "Summaries")
        tree = page.locator("#summary-tree")
        tree.locator(".bq-node, .bq-info").first.wait_for(timeout=60_000)
        _shot(page, "08-summaries")
        nodes = tree.locator("button.bq-node")
        if nodes.count() == 0:
            # the summaries stage is not in the default ingest stages yet: the tab says so
            assert "no summaries" in tree.inner_text()
            return
        nodes.first.click()
        page.locator("#summary-node .bq-node-chunk").first.wait_for(timeout=60_000)
        assert "chunks" in page.locator("#summary-node .bq-reader-head").inner_text()
        _shot(page, "09-summary-node")
    finally:
        context.close()


def test_delete_book(server, browser, ingested):
    """Runs last: deleting takes an explicit choice in the dropdown and a confirmation; then the lists
    update, in this page and in another page open on the Ask tab."""
    context, page = _open(browser, server)
    other_context, other = _open(browser, server)
    try:
        page.locator(f'#library-table tr[data-book="{ingested}"]').wait_for(timeout=60_000)
        _tab(other, "Ask")
        sync_api.expect(other.locator("#ask-book input")).to_have_value(re.compile("Gull Rock"), timeout=30_000)
        page.locator("#delete-book input").click()
        page.get_by_role("option", name=re.compile("Gull Rock")).first.click()
        page.locator("#delete-button").click()
        question = page.locator("#delete-question")
        question.get_by_text("cannot be undone").wait_for(timeout=60_000)
        assert "Gull Rock" in question.inner_text() and ingested in question.inner_text()
        _shot(page, "10-delete-question")
        page.locator("#delete-no").click()  # cancelled: nothing happens
        page.locator("#delete-status .bq-info", has_text="Nothing was deleted").wait_for(timeout=60_000)
        assert not page.locator("#delete-confirm").is_visible()
        assert page.locator(f'#library-table tr[data-book="{ingested}"]').is_visible()
        page.locator("#delete-button").click()
        page.locator("#delete-yes").click()
        page.locator("#delete-status .bq-ok").wait_for(timeout=60_000)
        _shot(page, "10-deleted")
        assert ingested in page.locator("#delete-status").inner_text()
        page.locator("#library-table .bq-info").wait_for(timeout=30_000)  # "The library is empty"
        # the other page follows within a few seconds, without a Refresh
        sync_api.expect(other.locator("#ask-book input")).to_have_value("", timeout=30_000)
        _tab(other, "Library")
        other.locator("#library-table .bq-info").wait_for(timeout=30_000)
    finally:
        context.close()
        other_context.close()

"""The page's CSS and the small click handlers of the HTML panes (passed to ``gr.HTML(js_on_load=)``)."""

CSS = """
.bq-msg { padding: 8px 12px; border-radius: 6px; margin: 6px 0; }
.bq-error { background: #fdecea; color: #8a1c1c; border: 1px solid #f5c2c0; }
.bq-warn { background: #fff6e0; color: #7a5200; border: 1px solid #f3dca0; }
.bq-ok { background: #e9f7ef; color: #1d5e35; border: 1px solid #b9e2c8; }
.bq-info { background: #eef3fb; color: #23436e; border: 1px solid #c7d7ef; }
.bq-muted { color: #6b7280; }
.bq-table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
.bq-table th, .bq-table td { border-bottom: 1px solid #e5e7eb; padding: 4px 6px; text-align: left;
  vertical-align: top; }
.bq-num { text-align: right; font-variant-numeric: tabular-nums; }
.bq-ready { color: #1d5e35; font-weight: 600; }
.bq-not-ready { color: #8a5a00; font-weight: 600; }
.bq-damaged { color: #a11d1d; font-weight: 600; }
.bq-progress progress { width: 220px; }
.bq-answer-text { white-space: pre-wrap; font-size: 1.08em; line-height: 1.6; padding: 6px 0; }
.bq-caret { animation: bq-blink 1s steps(1) infinite; color: #6b7280; }
@keyframes bq-blink { 50% { opacity: 0; } }
button.bq-cite { display: inline; border: 1px solid #9db4e0; background: #eef3fb; color: #1d4ed8;
  border-radius: 4px; padding: 0 3px; margin: 0 1px; font-size: 0.85em; cursor: pointer; line-height: 1.3; }
button.bq-cite:hover, button.bq-cite.bq-active { background: #1d4ed8; color: white; }
button.bq-cite.bq-inferred { border-style: dashed; }
button.bq-cite.bq-unsupported { border-color: #a11d1d; color: #a11d1d; text-decoration: line-through dotted; }
.bq-cite-bad { text-decoration: line-through; color: #9ca3af; font-size: 0.85em; }
.bq-section { margin-top: 10px; }
.bq-section h4, .bq-reader h4, .bq-tree h4 { margin: 8px 0 4px; }
.bq-evidence { margin: 0; padding-left: 18px; }
.bq-cited, .bq-cited-supported { color: #1d5e35; }
.bq-cited-unsupported { color: #a11d1d; font-weight: 600; }
.bq-not-cited { color: #6b7280; }
tr.bq-given td { background: #f3f7fd; }
.bq-timings { font-size: 0.9em; color: #374151; }
.bq-pre { white-space: pre-wrap; font-size: 0.92em; }
.bq-reader { border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 12px; background: #fcfcfd; }
.bq-reader-head { font-weight: 600; margin-bottom: 6px; }
.bq-claim { font-style: italic; color: #374151; margin-bottom: 6px; }
.bq-reader-text { white-space: pre-wrap; line-height: 1.55; max-height: 560px; overflow-y: auto; }
.bq-context { color: #6b7280; }
.bq-chunk { background: #f3f7fd; }
.bq-reader mark { background: #ffe066; color: #111827; padding: 1px 0; }
.bq-level { display: flex; flex-wrap: wrap; gap: 6px; }
button.bq-node { display: flex; flex-direction: column; align-items: flex-start; text-align: left; width: 260px;
  border: 1px solid #d1d5db; border-radius: 6px; padding: 6px 8px; background: white; cursor: pointer; }
button.bq-node:hover, button.bq-node.bq-active { border-color: #1d4ed8; background: #eef3fb; }
.bq-node-id { font-size: 0.8em; color: #1d4ed8; font-weight: 600; }
.bq-node-text { font-size: 0.85em; color: #374151; font-weight: normal; }
.bq-node-chunk { margin: 6px 0; border-top: 1px dashed #e5e7eb; padding-top: 4px; }
"""

# Clicks on a marker ([n]) in the answer pane become a "cite" event carrying which marker it was.
CITE_CLICK_JS = """
element.addEventListener('click', (ev) => {
  const el = ev.target.closest('[data-cite],[data-evidence]');
  if (!el || !element.contains(el)) return;
  ev.preventDefault();
  element.querySelectorAll('.bq-active').forEach((b) => b.classList.remove('bq-active'));
  el.classList.add('bq-active');
  const reader = document.getElementById('reader');
  if (reader) reader.dataset.bqReveal = '1';  // the passage this click opens may scroll the page to it
  trigger('cite', {cite: el.dataset.cite ?? null, evidence: el.dataset.evidence ?? null});
});
"""

# Each passage shown in the reader scrolls its text box so the highlight sits near the top third (a long
# passage would leave it below the box's fold). The page itself scrolls only after a click on a marker,
# to bring the highlight on screen; a finished answer showing its first citation leaves the page alone.
READER_SCROLL_JS = """
watch('value', () => {
  const mark = element.querySelector('mark');
  const reader = document.getElementById('reader');
  const reveal = reader && reader.dataset.bqReveal === '1';
  if (reader) delete reader.dataset.bqReveal;
  if (!mark) return;
  const box = mark.closest('.bq-reader-text');
  if (box) {
    const b = box.getBoundingClientRect(), m = mark.getBoundingClientRect();
    box.scrollTop += (m.top - b.top) - Math.max(0, (b.height - m.height) / 3);
  }
  if (reveal) mark.scrollIntoView({block: 'nearest', inline: 'nearest'});
});
"""

# Clicks on a summary card become a "node" event carrying the node id.
NODE_CLICK_JS = """
element.addEventListener('click', (ev) => {
  const el = ev.target.closest('[data-node]');
  if (!el || !element.contains(el)) return;
  element.querySelectorAll('.bq-active').forEach((b) => b.classList.remove('bq-active'));
  el.classList.add('bq-active');
  trigger('node', {node: el.dataset.node});
});
"""

"""Event summaries for transcripts: JSON validation, retry, mapping to utterances and chunks."""
from __future__ import annotations

import json

import pytest

from summarizer import EventError, Summarizer, Utterance, parse_events
from summarizer.events import session_windows


def words(text: str) -> int:
    return len(text.split())


def transcript():
    """Two sessions: session 1 in chunks 0-1, session 2 in chunks 2-4; utterance 'D2:2' spans chunks 2-3."""
    utts = [
        Utterance("D1:1", "Caroline: I went to an LGBTQ support group yesterday.", 1, "8 May 2023", [0]),
        Utterance("D1:2", "Melanie: That sounds powerful! How did it feel?", 1, "8 May 2023", [0]),
        Utterance("D1:3", "Caroline: Amazing. I'm thinking of studying counseling.", 1, "8 May 2023", [1]),
        Utterance("D2:1", "Melanie: We finally adopted a puppy named Oscar!", 2, "25 May 2023", [2]),
        Utterance("D2:2", "Caroline: Congratulations! I'm moving to Sweden next month.", 2, "25 May 2023", [2, 3]),
        Utterance("D2:3", "Melanie: Wow, that is a big change.", 2, "25 May 2023", [4]),
    ]
    chunks, pos = [], 0
    texts = ["s1a", "s1b", "s2a", "s2b", "s2c"]
    for t in texts:
        chunks.append((t, pos, pos + 10))
        pos += 11
    return chunks, utts


def good_answer(prompt: str) -> str:
    if "session 1" in prompt:
        return json.dumps({"events": [{"summary": "Caroline attended an LGBTQ support group and considered counseling.",
                                       "class": "EPHEMERAL", "related_line_indices": [1, 3]}]})
    return "```json\n" + json.dumps({"events": [
        {"summary": "Melanie adopted a puppy named Oscar.", "class": "anchor", "related_line_indices": [1]},
        {"summary": "Caroline announced she is moving to Sweden.", "class": "ANCHOR", "related_line_indices": [2, 3]},
    ]}) + "\n```"


def test_events_map_to_utterances_and_chunks():
    chunks, utts = transcript()
    prompts = []

    def complete(prompt, max_tokens):
        prompts.append(prompt)
        return good_answer(prompt)

    tree = Summarizer(complete, words).summarize_transcript(chunks, utts)
    level0 = tree.levels[0]
    assert [(n.start, n.end, n.session) for n in level0] == [(0, 2, 1), (2, 5, 2)]
    assert [len(level) for level in tree.levels] == [2, 1]
    assert "1. Caroline: I went to an LGBTQ support group" in prompts[0] and "(8 May 2023)" in prompts[0]
    assert '"related_line_indices"' in prompts[0] and "ANCHOR" in prompts[0]
    s1, s2 = level0
    assert s1.status == "ok" and s1.events[0]["utterance_ids"] == ["D1:1", "D1:3"]
    assert s1.events[0]["chunk_ids"] == [0, 1] and s1.events[0]["class"] == "EPHEMERAL"
    assert s2.events[0]["class"] == "ANCHOR" and s2.events[0]["chunk_ids"] == [2]
    assert s2.events[1]["utterance_ids"] == ["D2:2", "D2:3"] and s2.events[1]["chunk_ids"] == [2, 3, 4]
    assert "Sweden" in s2.text and "Oscar" in s2.text
    assert tree.meta["kind"] == "sessions"
    assert "conversation" in prompts[-1]  # the root summarises sessions, not a book


def test_invalid_json_is_retried_once():
    chunks, utts = transcript()
    prompts = []

    def complete(prompt, max_tokens):
        prompts.append(prompt)
        if "session 1" in prompt and "not valid" not in prompt:
            return '{"events": [{"summary": "Caroline went to a group", "class": "ANCHOR", '
        return good_answer(prompt)

    tree = Summarizer(complete, words).summarize_transcript(chunks, utts)
    s1 = tree.levels[0][0]
    assert s1.status == "retried" and "invalid JSON" in s1.error
    assert "Answer again with the JSON object only" in prompts[1]
    assert s1.events[0]["utterance_ids"] == ["D1:1", "D1:3"]


def test_invalid_twice_is_stored_as_failed():
    chunks, utts = transcript()

    def complete(prompt, max_tokens):
        if "session 2" in prompt:
            return json.dumps({"events": [{"summary": "Melanie got a dog.", "class": "MAJOR",
                                           "related_line_indices": [1]}]})
        return good_answer(prompt)

    tree = Summarizer(complete, words).summarize_transcript(chunks, utts)
    s2 = tree.levels[0][1]
    assert s2.status == "failed" and s2.events == []
    assert "MAJOR" in s2.error and "after retry" in s2.error
    assert "Oscar" in s2.text or "Sweden" in s2.text  # extractive fallback from the session's lines


@pytest.mark.parametrize("raw, message", [
    ("no json here", "no JSON object"),
    ('{"events": []}', "empty"),
    ('{"event": []}', '"events" list'),
    ('{"events": [{"summary": "", "class": "ANCHOR", "related_line_indices": [1]}]}', "summary"),
    ('{"events": [{"summary": "x", "class": "ANCHOR", "related_line_indices": [9]}]}', "outside 1..3"),
    ('{"events": [{"summary": "x", "class": "ANCHOR", "related_line_indices": ["1"]}]}', "integers"),
    ('{"events": [{"summary": "x", "class": "ANCHOR"}]}', "related_line_indices"),
    ('{"events": [{"summary": "x", "class": "ANCHOR", "related_line_indices": [1,}]}', "invalid JSON"),
])
def test_parse_events_rejects(raw, message):
    with pytest.raises(EventError, match=message):
        parse_events(raw, 3)


def test_parse_events_accepts_and_normalises():
    raw = 'Here you go: {"events": [' + ",".join(
        '{"summary": " A  b ", "class": "ephemeral", "related_line_indices": [2, 1, 2]}' for _ in range(4)) + "]} bye"
    events = parse_events(raw, 3)
    assert len(events) == 3  # at most three
    assert events[0] == {"summary": "A b", "class": "EPHEMERAL", "line_indices": [1, 2]}


def test_session_windows_split_long_sessions():
    utts = [Utterance(f"D1:{i}", "a: b", 1, None, [i]) for i in range(7)] + \
           [Utterance(f"D2:{i}", "a: b", 2, None, [7 + i]) for i in range(2)]
    assert session_windows(9, utts, block=3) == [(0, 3, 1), (3, 6, 1), (6, 7, 1), (7, 9, 2)]


def test_extractive_transcript_has_session_nodes():
    chunks, utts = transcript()
    tree = Summarizer(mode="extractive").summarize_transcript(chunks, utts)
    assert [n.status for n in tree.nodes()] == ["extractive"] * 3
    assert tree.levels[0][0].events is None and "Caroline" in tree.levels[0][0].text

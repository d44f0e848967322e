"""Transcripts: parsing ``Speaker: text`` files, rendering LoCoMo JSON, and chunking whole utterances."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bookqa.ingest import chunk_source, prepare_source
from bookqa.ingest.transcript import looks_like_transcript, parse_transcript, session_header

from test_ingest_chunks import check_chunks

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
MB = 1024 * 1024


def test_parse_text_transcript():
    source = prepare_source(FIXTURES / "transcript.txt", None, MB)
    assert source.kind == "transcript" and source.title is None
    rows = [(u["id"], u["speaker"], u["session"], u["session_time"], source.text[u["start"]:u["end"]])
            for u in source.utterances]
    assert rows == [
        ("S1:1", "Alice", 1, "7:00 pm on 9 May 2023", "[19:02] Alice: Did you finish the garden fence?"),
        ("S1:2", "Bob", 1, "7:00 pm on 9 May 2023",
         "[19:03] Bob: Almost. I still need to paint the gate.\nIt rained all weekend, so the wood is still damp."),
        ("S1:3", "Alice", 1, "7:00 pm on 9 May 2023", "[19:05] Alice: Let me know if you want help on Saturday."),
        ("S2:1", "Bob", 2, "1:56 pm on 8 June, 2023", "10:32 Bob: The gate is painted green now."),
        ("S2:2", "Alice", 2, "1:56 pm on 8 June, 2023", "10:33 Alice: Green? I thought you wanted blue."),
        ("S2:3", "Bob", 2, "1:56 pm on 8 June, 2023", "Bob: Blue paint was sold out at the hardware store."),
        ("S3:1", "Alice", 3, None, "Alice: We should plan the trip to the lake."),
        ("S3:2", "Bob", 3, None, "Bob: I can drive if you bring the tent."),
        ("X3:9", "Alice", 3, None, "[X3:9] Alice: Deal."),
    ]


@pytest.mark.parametrize("line, expected", [
    ("Session 2", (2, None)),
    ("=== Session 3 (7:00 pm on 9 May 2023) ===", (3, "7:00 pm on 9 May 2023")),
    ("[Session 1 — 1:56 pm on 8 May, 2023]", (1, "1:56 pm on 8 May, 2023")),
    ("## session 4: 9 June", (4, "9 June")),
    ("Alice: session 2 was fun", None),
])
def test_session_headers(line, expected):
    assert session_header(line) == expected


def test_chinese_speakers_and_full_width_colon():
    text = "张三：你好！\n李四：好久不见。最近怎么样？\n张三：还不错。"
    rows = parse_transcript(text)
    assert [(u["speaker"], text[u["start"]:u["end"]]) for u in rows] == [
        ("张三", "张三：你好！"), ("李四", "李四：好久不见。最近怎么样？"), ("张三", "张三：还不错。")]


def test_detection():
    assert looks_like_transcript((FIXTURES / "transcript.txt").read_text(encoding="utf-8"))
    assert not looks_like_transcript((FIXTURES / "gutenberg_mini.txt").read_text(encoding="utf-8"))
    assert not looks_like_transcript((FIXTURES / "hamlet_act1.txt").read_text(encoding="utf-8"))
    assert not looks_like_transcript("Note: this is a novel.\nIt has prose lines.\nMany of them.\nReally.")


def test_locomo_rendering():
    source = prepare_source(FIXTURES / "locomo_tiny.json", None, MB)
    raw = json.loads((FIXTURES / "locomo_tiny.json").read_text(encoding="utf-8"))[0]
    assert source.kind == "transcript" and source.title == "tiny-1"
    assert source.body_span == (0, len(source.text))
    lines = source.text.split("\n")
    assert lines[0] == "Session 1 — 4:15 pm on 2 March, 2024"
    assert "Session 2 — 10:05 am on 20 March, 2024" in lines
    turns = raw["conversation"]["session_1"] + raw["conversation"]["session_2"]
    assert [u["id"] for u in source.utterances] == [t["dia_id"] for t in turns]
    for u, turn in zip(source.utterances, turns):
        expected = f"{turn['speaker']}: {turn['text']}"
        if "blip_caption" in turn:
            expected += f" [shares a photo: {turn['blip_caption']}]"
        assert source.text[u["start"]:u["end"]] == expected
        assert u["speaker"] == turn["speaker"]
    assert {u["session_time"] for u in source.utterances if u["session"] == 2} == {"10:05 am on 20 March, 2024"}


@pytest.mark.parametrize("budget", [24, 60, 400])
@pytest.mark.parametrize("name", ["transcript.txt", "locomo_tiny.json"])
def test_transcript_chunks(qwen_tokenizer, name, budget):
    source = prepare_source(FIXTURES / name, None, MB)
    chunks = chunk_source(source.text, "transcript", qwen_tokenizer, budget, source.body_span,
                          source.utterances, lambda *a: None)
    check_chunks(source.text, chunks, qwen_tokenizer, budget, source.body_span)
    by_id = {u["id"]: u for u in source.utterances}
    seen = []
    for chunk in chunks:
        session = chunk.meta["session"]
        assert chunk.chapter == f"Session {session}"
        ids = chunk.meta["utterances"]
        for uid in ids:  # a chunk never mixes sessions and names the utterances it holds
            u = by_id[uid]
            assert u["session"] == session and chunk.meta["session_time"] == u["session_time"]
            assert chunk.start <= u["end"] and u["start"] <= chunk.end
        seen.extend(ids)
    # every utterance once, in order (a long one split over chunks repeats its id across them)
    assert [uid for i, uid in enumerate(seen) if i == 0 or seen[i - 1] != uid] == list(by_id)
    # utterances are whole unless alone over the budget
    for u in source.utterances:
        holders = [c for c in chunks if c.start <= u["start"] < c.end or c.start < u["end"] <= c.end]
        if len(holders) > 1:
            assert len(qwen_tokenizer.encode(source.text[u["start"]:u["end"]], add_special_tokens=False).ids) > budget
    # the first chunk of each session starts with the session header line
    firsts = {u["id"] for i, u in enumerate(source.utterances)
              if i == 0 or source.utterances[i - 1]["session"] != u["session"]}
    for i, chunk in enumerate(chunks):
        ids = chunk.meta["utterances"]
        if (not ids or ids[0] in firsts) and (i == 0 or chunks[i - 1].meta["session"] != chunk.meta["session"]):
            assert chunk.text.lower().lstrip("=[ ").startswith("session"), chunk.text


def test_long_utterance_is_split_and_keeps_its_id(qwen_tokenizer):
    speech = " ".join(f"This is clause {i} of a very long speech" for i in range(60))
    text = f"Session 1\nAlice: Hi.\nBob: {speech}\nAlice: Bye.\n"
    utterances = parse_transcript(text)
    chunks = chunk_source(text, "transcript", qwen_tokenizer, 48, (0, len(text)), utterances)
    check_chunks(text, chunks, qwen_tokenizer, 48, (0, len(text)))
    bob = [c for c in chunks if "S1:2" in c.meta["utterances"]]
    assert len(bob) > 3
    assert all(c.meta["utterances"] == ["S1:2"] for c in bob[1:-1])


def test_transcript_utterances_recomputed_when_missing(qwen_tokenizer):
    text = (FIXTURES / "transcript.txt").read_text(encoding="utf-8")
    chunks = chunk_source(text, "transcript", qwen_tokenizer, 200, (0, len(text)), None)
    assert [c.meta["utterances"] for c in chunks] == [
        ["S1:1", "S1:2", "S1:3"], ["S2:1", "S2:2", "S2:3"], ["S3:1", "S3:2", "X3:9"]]
    assert [c.meta["session_time"] for c in chunks] == ["7:00 pm on 9 May 2023", "1:56 pm on 8 June, 2023", None]


def test_text_transcript_starting_with_a_bracket_is_not_json(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_text("[Session 1 — 1:56 pm on 8 May, 2023]\nAnn: Hi!\nBen: Hello, Ann.\n", encoding="utf-8")
    source = prepare_source(path, None, MB)
    assert source.kind == "transcript"
    assert [(u["id"], u["speaker"], u["session_time"]) for u in source.utterances] == [
        ("S1:1", "Ann", "1:56 pm on 8 May, 2023"), ("S1:2", "Ben", "1:56 pm on 8 May, 2023")]

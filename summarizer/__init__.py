"""Hierarchical summaries of long texts, independent of bookqa.

* :class:`Summarizer` builds a :class:`Tree`: block summaries of every ``block`` consecutive chunks
  (or per-session event summaries for transcripts), then summaries of ``fanin`` summaries up to one
  root. Give it any ``complete(prompt, max_tokens) -> str`` callable and a ``count(text) -> int`` token
  counter, or use ``mode="extractive"`` (TextRank, no model).
* :func:`select_prefix` picks the summaries that cover a set of candidate chunks within a token budget.

This package imports nothing from bookqa, so it can be reused with any model or server.
"""
from .build import Plan, RunStats, Summarizer
from .cache import CallCache
from .events import EventError, Utterance, parse_events
from .extractive import extractive_summary, split_sentences
from .language import detect_language
from .prefix import Prefix, select_prefix
from .quality import clean_summary, problem
from .tree import Node, Tree, plan_blocks

__all__ = [
    "CallCache", "EventError", "Node", "Plan", "Prefix", "RunStats", "Summarizer", "Tree", "Utterance",
    "clean_summary", "detect_language", "extractive_summary", "parse_events", "plan_blocks", "problem",
    "select_prefix", "split_sentences",
]

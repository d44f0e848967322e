"""Ingestion: a file → decoded text (``prepare_source``) → sentence-aware chunks (``chunk_source``).

One job per module: ``reader`` (checks and decoding), ``gutenberg`` (boilerplate and title),
``headings`` (chapter headings), ``sentences`` (Punkt + CJK rules), ``transcript`` (speaker lines and
LoCoMo JSON), ``packing`` (token-budgeted packing), ``chunker`` (chunks by kind), ``source``.
"""
from .chunker import KINDS, chunk_source
from .source import Source, prepare_source

__all__ = ["KINDS", "Source", "chunk_source", "prepare_source"]

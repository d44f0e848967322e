"""The ingest stages, in order. Each stage is small: a fingerprint of its inputs and a run that
writes its own files into the book directory (see ``store.Stage``)."""
from __future__ import annotations

from typing import Any

from .fileio import fingerprint, read_json
from .progress import Progress
from .settings import Settings
from .store import CHUNKS, Book, Stage

CHUNKER_VERSION = 1


class ChunkStage:
    """Sentence-aware chunks of ~``chunk_tokens`` tokens, counted with the reranker's tokenizer."""

    name = "chunks"

    def fingerprint(self, book: Book, settings: Settings) -> str:
        return fingerprint(book.manifest["content_sha256"], book.kind, settings.chunk_tokens,
                           settings.reranker_model, CHUNKER_VERSION)

    def run(self, book: Book, settings: Settings, progress: Progress) -> dict[str, Any]:
        from .ingest import chunk_source
        from .weights import fast_tokenizer

        tokenizer = fast_tokenizer(settings.reranker_model, settings, progress)
        utterances = None
        if (book.dir / "utterances.json").exists():
            utterances = read_json(book.dir / "utterances.json")
        chunks = chunk_source(book.text, kind=book.kind, tokenizer=tokenizer, budget=settings.chunk_tokens,
                              body_span=tuple(book.manifest.get("body_span") or (0, len(book.text))),
                              utterances=utterances, progress=progress)
        book.save_chunks(chunks)
        return {"chunks": len(chunks), "tokens": sum(c.tokens for c in chunks)}

    def outputs(self, book: Book) -> list[str]:
        return [CHUNKS]


def default_stages(settings: Settings) -> list[Stage]:
    """The stages ``Library.ingest`` runs when none are named."""
    from .retrieve.stages import Bm25Stage, DenseStage
    from .summaries import SummaryStage

    stages: list[Stage] = [ChunkStage(), Bm25Stage(), DenseStage(), SummaryStage()]
    if settings.qr_cache == "book":
        from .rerank.stage import QRCacheStage

        stages.append(QRCacheStage())
    return stages

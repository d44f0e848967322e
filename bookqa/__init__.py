"""bookqa: cited question answering over very long texts, with QRRanker attention reranking."""

__version__ = "0.1.0"

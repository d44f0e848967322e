"""bookqa: cited question answering over very long texts, with QRRanker attention reranking.

The Python API (the README shows it in use)::

    from bookqa import Library, ask
    book = Library().ingest("book.txt").book
    result = ask(book, "Who is Lady Dedlock's daughter?")

Names are imported on first use, so ``import bookqa`` stays cheap (no torch, no models).
"""

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Library": "bookqa.library",
    "IngestReport": "bookqa.library",
    "Book": "bookqa.store",
    "BrokenBook": "bookqa.store",  # a damaged book as Library.broken() lists it: reason and repair command
    "ask": "bookqa.pipeline",
    "AskResult": "bookqa.pipeline",
    "search": "bookqa.retrieve",
    "QRRanker": "bookqa.rerank.qr",
    "QRRankerConfig": "bookqa.rerank.config",
    "Settings": "bookqa.settings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bookqa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

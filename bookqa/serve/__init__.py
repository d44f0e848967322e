"""``bookqa serve``: the HTTP API (FastAPI on uvicorn) over the library, the QR reranker and the answerer.

``app`` builds the application, ``rerank`` and ``books`` hold the routes, ``worker`` the one model thread
and its bounded queue, ``jobs`` the ingest jobs, ``middleware`` request ids, the token and size limits,
``failures`` how errors become answers. Importing this package loads FastAPI; ``import bookqa`` does not.
"""

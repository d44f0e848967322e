"""The research bench beside the product: QR head detection and its seed data, position priors, the
baseline rerankers, evaluation on the public datasets, and QR training.

The product path (``bookqa.ingest``, ``retrieve``, ``rerank``, ``generate``, ``answer``, ``pipeline``,
``store``, ``library``) never imports this package; only the CLI's ``eval``, ``heads`` and ``train``
commands do. What the bench produces reaches the product as files: heads files, adapters, reports.
"""

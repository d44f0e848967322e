"""Batch work on a Ray cluster (``--ray``): connecting to it (``cluster``) and ingesting a folder of books
with model-holding workers (``ingest``). Only the ``--ray`` paths import this package, and only its
functions import Ray, so a run without ``--ray`` never loads it (docs/scale-out.md)."""

"""The bench's batch jobs on a Ray cluster (``bookqa eval --ray``): ``ray_jobs``. Imported only with
``--ray``; the product's connection helpers are in ``bookqa/scale``."""

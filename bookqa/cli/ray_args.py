"""The ``--ray`` flags that ``bookqa eval`` and ``bookqa ingest`` share (docs/scale-out.md). Parsing them
imports nothing of Ray; ``ray_options`` is called only when ``--ray`` was given."""
from __future__ import annotations

import argparse


def add_ray_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    group = p.add_argument_group("Ray cluster (pip install 'bookqa[ray]'; docs/scale-out.md)")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help=f"spread the {unit} over the workers of a Ray cluster: ADDRESS of its head (host:port); "
                            "without ADDRESS, $RAY_ADDRESS or the cluster started on this machine, else a new "
                            "local one. Paths (the books' home, the model cache, the output) must be on storage "
                            "every node reaches")
    group.add_argument("--ray-workers", type=int, default=0, metavar="N",
                       help="workers, each holding its own loaded models (default: the cluster's CPUs / "
                            "--ray-cpus, at most one per book)")
    group.add_argument("--ray-cpus", type=float, default=1.0, metavar="N", help="CPUs per worker (default 1)")
    group.add_argument("--ray-retries", type=int, default=3, metavar="N",
                       help="restarts of a worker that died; its book is retried and resumes from what it stored "
                            "(default 3)")


def ray_options(args: argparse.Namespace):
    from ..scale.cluster import RayOptions

    return RayOptions(address=args.ray or None, workers=args.ray_workers, worker_cpus=args.ray_cpus,
                      retries=args.ray_retries)

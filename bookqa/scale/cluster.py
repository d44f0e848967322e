"""Connecting to a Ray cluster for batch work, and the pieces every distributed job shares: how many
workers, their actor options, and the counter behind the job's one progress bar.

Workers are Ray actors: each loads its models once and is handed one unit of work (a book) per call.
A worker that dies is restarted by Ray and the call that was running is retried on it (``retries``
times); a unit of work resumes from what the dead try stored, because every job here writes its results
to files as it goes (rows per question, stage files per book).
"""
from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from ..errors import BookQAError, ConfigError

# Variables a worker needs to behave as this process does (offline hub, BOOKQA_* settings read by the
# libraries), passed in the job's runtime environment. Workers draw no progress bars: the driver draws one.
FORWARDED_PREFIXES = ("BOOKQA_", "HF_", "TRANSFORMERS_")
WORKER_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class RayOptions:
    """How a job uses the cluster (the ``--ray``, ``--ray-workers``, ``--ray-cpus``, ``--ray-retries`` flags)."""

    address: Optional[str] = None  # None: RAY_ADDRESS, else a cluster started on this machine, else a new local one
    workers: int = 0  # 0: as many as the cluster's CPUs allow at ``worker_cpus`` each, at most one per book
    worker_cpus: float = 1.0  # CPUs Ray reserves for each worker (its torch threads follow)
    retries: int = 3  # restarts of a worker that died; its book is retried on the restarted worker

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"--ray-workers must not be negative, got {self.workers}")
        if self.worker_cpus <= 0:
            raise ConfigError(f"--ray-cpus must be positive, got {self.worker_cpus}")
        if self.retries < 0:
            raise ConfigError(f"--ray-retries must not be negative, got {self.retries}")


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'bookqa[ray]'") from None
    return ray


@contextmanager
def connected(options: RayOptions) -> Iterator[Any]:
    """Yield the ``ray`` module connected to the cluster; disconnect afterwards (a cluster this process
    started ends with it). A process already connected (a notebook, a test) keeps its connection."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    _check_reachable(options.address)
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
    env.update(WORKER_ENV)
    try:
        ray.init(address=options.address or None, runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or os.environ.get("RAY_ADDRESS") or "this machine"
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ConfigError(f"cannot use the Ray cluster at {where}: {reason} (a cluster with token authentication "
                          "also needs RAY_AUTH_MODE=token and its token here: docs/scale-out.md)") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: Optional[str], timeout_s: float = 10.0) -> None:
    """Refuse a HOST:PORT where nothing listens at once: Ray itself retries an unreachable head for many
    minutes before it gives up."""
    match = re.fullmatch(r"\[?([^\[\]/]+?)\]?:(\d+)", address or "")
    if not match:
        return  # "auto", "local", a ray:// client address: Ray's own checks
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                          "`ray start --head` (docs/scale-out.md)") from None


def worker_count(ray, options: RayOptions, units: int) -> int:
    """Workers for ``units`` books: the requested number, or what the cluster's CPUs hold; never more
    workers than books."""
    if options.workers:
        return max(1, min(options.workers, units))
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, min(units, int(cpus // options.worker_cpus)))


def actor_class(ray, cls: type, options: RayOptions):
    """``cls`` as a Ray actor that Ray restarts when its process dies, retrying the call it was running."""
    return ray.remote(cls).options(num_cpus=options.worker_cpus, max_restarts=options.retries,
                                   max_task_retries=options.retries)


class DoneCounter:
    """Which units of work the workers have finished, by id (made a Ray actor by ``done_counter``). Counted
    as a set: a retried call reports again what its dead try had finished, and the bar stays right."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def done(self, item_id: str) -> None:
        self.ids.add(str(item_id))

    def count(self) -> int:
        return len(self.ids)


def done_counter(ray):
    return ray.remote(num_cpus=0)(DoneCounter).remote()


def task_error(ray, exc: BaseException) -> BaseException:
    """What to raise for a worker's failure: a bookqa error raised in a worker as itself (a one-line
    message), a worker that kept dying as a ConfigError that says what is kept; anything else unchanged."""
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, BookQAError):
        return exc.cause
    if isinstance(exc, ray.exceptions.RayActorError):
        return ConfigError("a Ray worker died and its restarts (--ray-retries) are used up; finished work is "
                           "kept, and the same command with --resume goes on from it")
    return exc

"""A content-addressed memo of completion calls, persisted as one JSON file.

The key hashes everything the answer depends on (prompt text, model id, call parameters, prompt
version), so a re-run with the same inputs makes no calls, an interrupted run resumes with only the
missing ones, and a changed prompt, model or mode never reuses a stale answer. The file is rewritten
atomically after every new answer (temp file + fsync + rename): a crash loses at most the call in
flight. This package must not import bookqa, hence its own small atomic writer.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

CACHE_VERSION = 1


def call_key(prompt: str, model_id: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"prompt": prompt, "model": model_id, "params": params}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class CallCache:
    """``key → raw completion text``; in memory only when ``path`` is None. Thread-safe."""

    def __init__(self, path: Optional[Path | str] = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # unreadable cache: start over rather than fail (it is only a memo)
            if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
                self._entries = {k: v for k, v in (data.get("entries") or {}).items() if isinstance(v, str)}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> Optional[str]:
        return self._entries.get(key)

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._entries[key] = text
            if self.path is not None:
                atomic_write_json(self.path, {"version": CACHE_VERSION, "entries": self._entries})

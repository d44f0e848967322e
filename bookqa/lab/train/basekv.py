"""Keys and values of the cached layout's blocks under the base weights, for question-side training.

With ``attention="question"`` the adapter acts on the question block only: the shared prefix and every
chunk block are encoded by the base model, exactly as a book's chunk cache holds them, and only the
question's few dozen tokens run with gradients. This module computes those keys/values with a frozen copy of
the base model (the trained model's weights change under the optimiser; these never do) and keeps each
block's rows on disk, keyed by what they depend on, so a resumed run or a second epoch encodes nothing twice.

Rows are stored in the product cache's form (bfloat16 unless told otherwise), one safetensors file per
block, written to a temporary name and renamed, so an interrupted run leaves whole files or none.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...rerank.cached import appended_rows
from ...rerank.readout import cache_holding, new_cache

ROWS = "rows"


class BaseBlockKV:
    """Per-block keys/values (layers, 2, kv_heads, tokens, head_dim) of a frozen base model's layers 0..L."""

    def __init__(self, model, deepest: int, directory: Optional[Path] = None, identity: str = "",
                 store_dtype: torch.dtype = torch.bfloat16):
        self.model = model
        self.deepest = deepest
        self.layers = deepest + 1
        self.directory = Path(directory) if directory is not None else None
        self.identity = identity  # what the rows depend on besides the token ids (weights, dtype, layers)
        self.store_dtype = store_dtype
        self._prefix: dict[tuple[int, ...], torch.Tensor] = {}
        self.encoded = 0  # blocks computed by this object (not read from disk)
        for p in model.parameters():
            p.requires_grad_(False)

    def _key(self, prefix_ids: Sequence[int], ids: Sequence[int]) -> str:
        blob = json.dumps([self.identity, self.layers, str(self.store_dtype), list(prefix_ids), list(ids)])
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _run(self, ids: Sequence[int], cache) -> torch.Tensor:
        return appended_rows(self.model, ids, cache, self.deepest).to(self.store_dtype).clone()

    def prefix(self, prefix_ids: Sequence[int]) -> torch.Tensor:
        key = tuple(prefix_ids)
        if key not in self._prefix:
            self._prefix[key] = self._stored(list(prefix_ids), [], lambda: self._run(prefix_ids, new_cache(self.model)))
        return self._prefix[key]

    def block(self, prefix_ids: Sequence[int], ids: Sequence[int]) -> torch.Tensor:
        """The rows a chunk block appends after the shared prefix, at the positions right after it."""
        return self._stored(prefix_ids, ids, lambda: self._run(ids, cache_holding(self.model, self.prefix(prefix_ids))))

    def _stored(self, prefix_ids: Sequence[int], ids: Sequence[int], compute) -> torch.Tensor:
        from safetensors.torch import load_file, save_file

        path = None
        if self.directory is not None:
            key = self._key(prefix_ids, ids)
            path = self.directory / key[:2] / f"{key}.safetensors"
            if path.exists():
                return load_file(str(path))[ROWS]
        rows = compute()
        self.encoded += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".rows.", dir=path.parent)
            os.close(fd)
            try:
                save_file({ROWS: rows.contiguous()}, tmp)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return rows

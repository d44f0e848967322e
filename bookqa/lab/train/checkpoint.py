"""Resumable training checkpoints: safetensors for tensors, JSON for everything else (never pickle).

A checkpoint is a directory ``<out>/checkpoints/step-NNNNNN/``::

    trainable.safetensors   the trainable parameters, by name
    optimizer.safetensors   AdamW state: "<param name>::<key>" (step, exp_avg, exp_avg_sq)
    state.json              step, loss history, validation results, run fingerprint, optimizer
                            hyper-parameters (param_groups with parameter names instead of indices)

It is written into a temporary directory and renamed into place, so a checkpoint either exists whole or
not at all; older checkpoints are removed once the new one is in place.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from ...errors import InputError
from ...fileio import read_json, write_json

STEP_DIR = re.compile(r"step-(\d{6,})$")
KEY_SEP = "::"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def latest_checkpoint(directory: Path | str) -> Optional[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))
             and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def save_checkpoint(directory: Path | str, step: int, trainable: dict[str, torch.nn.Parameter],
                    optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int = 1) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=directory))
    try:
        save_file({n: p.detach().cpu().contiguous() for n, p in trainable.items()}, str(tmp / "trainable.safetensors"))
        opt = optimizer.state_dict()
        order = [n for n in trainable]  # the optimizer was built over trainable.values() in this order
        tensors, scalars = {}, {}
        for idx, per in opt["state"].items():
            name = order[idx]
            for key, value in per.items():
                if torch.is_tensor(value):
                    tensors[f"{name}{KEY_SEP}{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{name}{KEY_SEP}{key}"] = value
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        groups = []
        for g in opt["param_groups"]:
            row = {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
            row["params"] = [order[i] for i in g["params"]]
            groups.append(row)
        write_json(tmp / "state.json", {**state, "step": step,
                                        "optimizer": {"param_groups": groups, "scalars": scalars}})
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    older = sorted((int(m.group(1)), p) for p in directory.iterdir()
                   if p.is_dir() and (m := STEP_DIR.match(p.name)) and p != final)
    for _, p in older[:max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def read_state(path: Path | str) -> dict[str, Any]:
    return read_json(Path(path) / "state.json")


def load_checkpoint(path: Path | str, trainable: dict[str, torch.nn.Parameter],
                    optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copy the saved parameters into ``trainable`` and restore the optimizer; returns state.json."""
    from safetensors.torch import load_file

    path = Path(path)
    state = read_state(path)
    params = load_file(str(path / "trainable.safetensors"))
    if set(params) != set(trainable):
        extra, missing = sorted(set(params) - set(trainable)), sorted(set(trainable) - set(params))
        raise InputError(f"checkpoint {path} does not match the trainable parameters "
                         f"(unexpected {extra[:3]}, missing {missing[:3]})")
    with torch.no_grad():
        for name, p in trainable.items():
            p.copy_(params[name].to(device=p.device, dtype=p.dtype))
    saved = load_file(str(path / "optimizer.safetensors"))
    order = list(trainable)
    index = {n: i for i, n in enumerate(order)}
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in saved.items():
        name, field = key.rsplit(KEY_SEP, 1)
        per_param.setdefault(index[name], {})[field] = value
    for key, value in state["optimizer"].get("scalars", {}).items():
        name, field = key.rsplit(KEY_SEP, 1)
        per_param.setdefault(index[name], {})[field] = value
    groups = []
    for g in state["optimizer"]["param_groups"]:
        row = dict(g)
        if isinstance(row.get("betas"), list):
            row["betas"] = tuple(row["betas"])
        row["params"] = [index[n] for n in g["params"]]
        groups.append(row)
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return state

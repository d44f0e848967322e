"""The QRRanker training objective: the paper's group contrastive loss over normalised QR scores.

Per sample, the candidates' raw QR scores S are max-min normalised to [0, SCALE]::

    Ŝ = SCALE · (S − min S) / (max S − min S + ε)

(raw scores have an unstable range because of instruction and attention-sink tokens, so the paper
normalises instead of using a temperature), and each positive p is an independent sub-sample with its own
softmax over itself and *all* negatives (the other positives are left out of its denominator)::

    L = −(1/|G|) Σ_{p∈G} log( exp(ŝ_p) / (exp(ŝ_p) + Σ_{n∈N} exp(ŝ_n)) )

Gradients run through the normalisation, min and max included.
"""
from __future__ import annotations

from typing import Sequence

import torch

SCALE = 8.0  # the paper's scale: the best candidate gets logit 8, the worst 0
EPS = 1e-6  # keeps the denominator positive when all candidates score the same


def normalise_scores(scores: torch.Tensor, scale: float = SCALE, eps: float = EPS) -> torch.Tensor:
    """Max-min normalise one sample's candidate scores (1-D) to [0, scale]."""
    lo, hi = scores.min(), scores.max()
    return scale * (scores - lo) / (hi - lo + eps)


def group_contrastive_loss(scores: torch.Tensor, positives: Sequence[int], scale: float = SCALE,
                           eps: float = EPS) -> torch.Tensor:
    """The loss of one sample from its raw candidate scores (1-D) and the indices of its positives."""
    if scores.dim() != 1:
        raise ValueError(f"expected one sample's 1-D scores, got shape {tuple(scores.shape)}")
    pos = sorted(set(int(p) for p in positives))
    if not pos or any(not 0 <= p < scores.numel() for p in pos):
        raise ValueError(f"positives {positives} must be non-empty indices into {scores.numel()} candidates")
    logits = normalise_scores(scores, scale, eps)
    is_pos = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    is_pos[pos] = True
    negatives = logits[~is_pos]
    pos_logits = logits[is_pos]
    # −log(e^p / (e^p + Σ e^n)) = logsumexp([p, n...]) − p, one row per positive
    rows = torch.cat([pos_logits[:, None], negatives[None, :].expand(len(pos), -1)], dim=1)
    return (torch.logsumexp(rows, dim=1) - pos_logits).mean()

"""The QR training objective: max-min normalisation to [0, 8] and the group contrastive loss."""
from __future__ import annotations

import math

import pytest
import torch

from bookqa.lab.train.loss import EPS, SCALE, group_contrastive_loss, normalise_scores


def test_normalisation_maps_min_to_0_and_max_to_8():
    s = torch.tensor([0.31, -2.0, 5.5, 0.0, 1.25], dtype=torch.float64)
    n = normalise_scores(s)
    assert SCALE == 8.0
    assert n[1].item() == pytest.approx(0.0, abs=1e-12)  # the minimum
    assert n[2].item() == pytest.approx(8.0 * 7.5 / (7.5 + EPS), abs=1e-12)  # the maximum, up to ε
    assert n[2].item() == pytest.approx(8.0, abs=1e-5)
    assert n.min().item() >= 0 and n.max().item() <= 8.0
    # Affine-invariant: shifting and scaling the raw scores changes nothing (up to ε).
    torch.testing.assert_close(normalise_scores(3.0 * s + 11.0), n, atol=1e-5, rtol=0)
    # All equal: ε keeps it finite (every candidate gets 0).
    assert torch.equal(normalise_scores(torch.full((4,), 0.7)), torch.zeros(4))


def test_loss_equals_hand_computed_value():
    # Raw scores chosen so the normalised logits are round: min 0.1, max 0.9 -> ŝ = 10·(s − 0.1)
    scores = torch.tensor([0.5, 0.1, 0.3, 0.9, 0.2], dtype=torch.float64)  # ŝ ≈ [4, 0, 2, 8, 1]
    positives = [0, 3]  # two positives (ŝ 4 and 8), three negatives (ŝ 0, 2, 1)
    neg = math.exp(0) + math.exp(2) + math.exp(1)
    by_hand = 0.5 * (-math.log(math.exp(4) / (math.exp(4) + neg)) - math.log(math.exp(8) / (math.exp(8) + neg)))
    got = group_contrastive_loss(scores, positives)
    assert got.item() == pytest.approx(by_hand, abs=1e-5)
    assert by_hand == pytest.approx(0.5 * (math.log(1 + neg / math.exp(4)) + math.log(1 + neg / math.exp(8))))
    # With candidate 0 a negative instead, it joins the denominator of the remaining positive.
    one = group_contrastive_loss(scores, [3]).item()
    assert one == pytest.approx(math.log(1 + (neg + math.exp(4)) / math.exp(8)), abs=1e-5)
    # Order of the positives and duplicates do not matter.
    assert group_contrastive_loss(scores, [3, 0, 3]).item() == pytest.approx(got.item())


def test_gradient_runs_through_min_and_max():
    scores = torch.tensor([0.5, 0.1, 0.3, 0.9, 0.2], dtype=torch.float64, requires_grad=True)
    group_contrastive_loss(scores, [0, 3]).backward()
    g = scores.grad
    assert torch.isfinite(g).all()
    assert g[1] != 0 and g[3] != 0  # the min and the max are in the graph
    assert g[0] < 0  # raising a positive lowers the loss
    assert g[2] > 0  # raising a (non-extreme) negative raises it


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        group_contrastive_loss(torch.zeros(3), [])
    with pytest.raises(ValueError):
        group_contrastive_loss(torch.zeros(3), [3])
    with pytest.raises(ValueError):
        group_contrastive_loss(torch.zeros(2, 3), [0])

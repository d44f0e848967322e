"""Baseline rerankers compared with QR in evaluations: pointwise yes/no logits, RankGPT-style ordering, Likert scoring."""

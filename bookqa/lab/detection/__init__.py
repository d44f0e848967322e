"""QR head detection: seed items, the detection itself, per-position priors, synthetic checks."""

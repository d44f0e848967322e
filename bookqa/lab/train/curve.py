"""The training loss curve as a small self-contained SVG (no plotting dependency)."""
from __future__ import annotations

from typing import Sequence

from ...fileio import write_text


def running_mean(values: Sequence[float], window: int = 10) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def loss_curve_svg(losses: Sequence[float], title: str = "training loss", window: int = 10,
                   width: int = 640, height: int = 320) -> str:
    """Per-step loss (grey) and its running mean over ``window`` steps (blue), steps on the x axis."""
    pad_l, pad_r, pad_t, pad_b = 56, 16, 28, 36
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{pad_l}" y="18" font-size="13">{title}</text>']
    if losses:
        lo, hi = min(losses), max(losses)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        n = len(losses)

        def xy(i: int, v: float) -> str:
            x = pad_l + (w * i / (n - 1) if n > 1 else w / 2)
            y = pad_t + h * (1 - (v - lo) / (hi - lo))
            return f"{x:.1f},{y:.1f}"

        for frac in (0.0, 0.5, 1.0):
            v = lo + frac * (hi - lo)
            y = pad_t + h * (1 - frac)
            parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{pad_l + w}" y2="{y:.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        parts.append(f'<text x="{pad_l}" y="{height - 10}">step 1</text>')
        parts.append(f'<text x="{pad_l + w}" y="{height - 10}" text-anchor="end">step {n}</text>')
        parts.append('<polyline fill="none" stroke="#aaa" stroke-width="1" points="'
                     + " ".join(xy(i, v) for i, v in enumerate(losses)) + '"/>')
        parts.append('<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="'
                     + " ".join(xy(i, v) for i, v in enumerate(running_mean(losses, window))) + '"/>')
        parts.append(f'<text x="{pad_l + w}" y="18" text-anchor="end" fill="#1f5fbf">running mean of {window}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_loss_curve(path, losses: Sequence[float], title: str = "training loss") -> None:
    write_text(path, loss_curve_svg(losses, title))

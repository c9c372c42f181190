"""Training curves (loss, validation MaxF) as matplotlib figures: written as PNGs beside a run's checkpoints and
embedded in the HTML report. matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

import functools
from pathlib import Path

CURVES = (("loss", "loss.png", "training loss", 1), ("val_MaxF", "maxf.png", "validation MaxF (%)", 100),
          ("val_bev_MaxF", "bev_maxf.png", "validation MaxF, bird's-eye view (%)", 100))


def curve_figures(history: list[dict]) -> dict:
    """{key: (file name, matplotlib figure)} for the loss and validation-MaxF curves of a training history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for key, fname, label, k in CURVES:
        pts = [(h["epoch"], h[key] * k) for h in history if isinstance(h.get(key), float) and h[key] == h[key]]
        if pts:
            fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
            ax.plot(*zip(*pts), marker="o", ms=3)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            out[key] = (fname, fig)
    return out


def plot_curves(history: list[dict], run_dir: Path) -> None:
    """Write the curves of `history` into run_dir (loss.png, maxf.png, bev_maxf.png), each atomically."""
    import matplotlib.pyplot as plt

    from roadseg.data.io import atomic_write

    for fname, fig in curve_figures(history).values():
        try:
            atomic_write(Path(run_dir) / fname, functools.partial(fig.savefig, format="png"))
        finally:
            plt.close(fig)

"""training_curves.png: loss, cosine and acceptance panels (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from common.fileio import atomic_writer, read_json


def save_curves(history_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_json(history_path)
    epochs = history.get("epoch") or list(range(1, len(history.get("val_loss", [])) + 1))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (
        ("Loss", ("train_loss", "val_loss")),
        ("Cosine similarity", ("train_cos_sim", "val_cos_sim")),
        ("Acceptance rate", ("val_accept_80", "val_accept_85", "val_accept_90", "val_accept_95")),
    )
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            values = history.get(key)
            if values:
                ax.plot(epochs[: len(values)], [float("nan") if v is None else v for v in values], label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(out) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)

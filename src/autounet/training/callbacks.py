"""Per-epoch callbacks: the metrics file and the progress plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from autounet.io.jsonio import atomic_write, nan_to_none, write_json

__all__ = ["EpochCallback", "MetricsFile", "ProgressPlot"]

History = Mapping[str, Sequence[float | list[float] | None]]


class EpochCallback(Protocol):
    """Called after every epoch with the whole history (one list per metric, one entry per epoch)."""

    def on_epoch_end(self, epoch: int, history: History) -> None:
        """React to a finished epoch."""
        ...


class MetricsFile:
    """``metrics.json``: every metric of every epoch, rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, epoch: int, history: History) -> None:
        """Rewrite the file."""
        write_json(self.path, nan_to_none({key: list(values) for key, values in history.items()}))


class ProgressPlot:
    """``progress.png``: losses and the objective's validation metrics, epoch time, learning rate.

    Args:
        path: The image to (re)write.
        metrics: ``(history key, legend label)`` of each metric drawn on the right axis beside the losses; the
            first dotted (the raw per-epoch value), the others solid (smoothed values). The axis takes the
            first label, and the range 0..1 when every value lies there (Dice, AP).
    """

    def __init__(self, path: Path, metrics: Sequence[tuple[str, str]] = (
            ("pseudo_dice", "pseudo Dice"), ("pseudo_dice_ema", "pseudo Dice (EMA)"))) -> None:
        self.path = path
        self.metrics = tuple(metrics)

    def on_epoch_end(self, epoch: int, history: History) -> None:
        """Redraw the figure (matplotlib's Agg backend: no display needed)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        epochs = list(range(len(history["train_loss"])))
        figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 12))
        top.plot(epochs, history["train_loss"], color="tab:blue", label="train loss")
        top.plot(epochs, history["val_loss"], color="tab:red", label="validation loss")
        top.set_ylabel("loss")
        metric_axis = top.twinx()
        plotted: list[float] = []
        for index, (key, label) in enumerate(self.metrics):
            values = [float("nan") if v is None else float(v) for v in history[key]]  # type: ignore[arg-type]
            plotted += [v for v in values if v == v]  # not NaN
            metric_axis.plot(epochs, values, color="tab:green", linestyle=":" if index == 0 else "-", label=label)
        if self.metrics:
            metric_axis.set_ylabel(self.metrics[0][1])
        if all(0 <= v <= 1 for v in plotted):
            metric_axis.set_ylim(0, 1)
        top.legend(loc="upper left")
        metric_axis.legend(loc="upper right")
        middle.plot(epochs, history["epoch_seconds"], color="tab:purple")
        middle.set_ylabel("epoch time (s)")
        bottom.plot(epochs, history["learning_rate"], color="tab:orange")
        bottom.set_ylabel("learning rate")
        bottom.set_xlabel("epoch")
        figure.tight_layout()
        with atomic_write(self.path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=80)
        plt.close(figure)

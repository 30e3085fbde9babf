"""Training statistics: per-epoch averages of every logged value, the status line and the plot.

A stat set is a stream of values: "train" (one update per batch), "val" and "test" (one update
per evaluation). Values are summed as they come and averaged when the epoch ends.
"""
import io
import math
from typing import Any, Dict, List, Mapping, Optional

from recon_trainer.fileio import atomic_write

STAT_SETS_ORDER = ("train", "val", "test")


class TrainingStats:
    """Running sums of the current epoch and the per-epoch averages of the finished ones.

    history[stat_set][name][epoch] is the average of `name` over that epoch's updates;
    n_updates[stat_set][epoch] counts the updates (batches for "train").
    """

    def __init__(self) -> None:
        self.epoch = -1
        self.history: Dict[str, Dict[str, Dict[int, float]]] = {}
        self.n_updates: Dict[str, Dict[int, int]] = {}
        self._sums: Dict[str, Dict[str, float]] = {}
        self._counts: Dict[str, Dict[str, int]] = {}
        self._updates: Dict[str, int] = {}

    def start_epoch(self, epoch: int) -> None:
        """Begin collecting `epoch` (the running sums are cleared)."""
        self.epoch = epoch
        self._sums, self._counts, self._updates = {}, {}, {}

    def update(self, stat_set: str, values: Mapping[str, float]) -> None:
        """Add one value per name (a batch's losses, an evaluation's metrics)."""
        sums = self._sums.setdefault(stat_set, {})
        counts = self._counts.setdefault(stat_set, {})
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
        self._updates[stat_set] = self._updates.get(stat_set, 0) + 1

    def averages(self, stat_set: str) -> Dict[str, float]:
        """The current epoch's averages so far."""
        counts = self._counts.get(stat_set, {})
        return {name: total / counts[name] for name, total in self._sums.get(stat_set, {}).items()}

    def end_epoch(self) -> Dict[str, Dict[str, float]]:
        """Store the current epoch's averages in the history; they are returned per stat set."""
        finished = {}
        for stat_set in self._sums:
            finished[stat_set] = self.averages(stat_set)
            for name, value in finished[stat_set].items():
                self.history.setdefault(stat_set, {}).setdefault(name, {})[self.epoch] = value
            self.n_updates.setdefault(stat_set, {})[self.epoch] = self._updates[stat_set]
        self._sums, self._counts, self._updates = {}, {}, {}
        return finished

    def state_dict(self) -> Dict[str, Any]:
        """Plain values only (saved in checkpoints, read with weights_only=True)."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "n_updates": self.n_updates,
            "sums": self._sums,
            "counts": self._counts,
            "updates": self._updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.n_updates = state["n_updates"]
        self._sums, self._counts, self._updates = state["sums"], state["counts"], state["updates"]

    def plot(self, path: str) -> None:
        """Write a PNG with one panel per logged name (x: epoch, a line per stat set)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = sorted({name for by_name in self.history.values() for name in by_name})
        if not names:
            return
        n_cols = min(3, len(names))
        n_rows = math.ceil(len(names) / n_cols)
        figure = Figure(figsize=(4 * n_cols, 2.5 * n_rows))
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.3, hspace=0.6)
        for index, name in enumerate(names):
            axes = figure.add_subplot(n_rows, n_cols, index + 1)
            for stat_set in _ordered(self.history):
                series = self.history[stat_set].get(name)
                if series:
                    epochs = sorted(series)
                    axes.plot(epochs, [series[e] for e in epochs], label=stat_set)
            axes.set_title(name, fontsize="small")
            axes.tick_params(labelsize="x-small")
            axes.legend(fontsize="x-small")
        buffer = io.BytesIO()
        FigureCanvasAgg(figure).print_png(buffer)
        atomic_write(path, buffer.getvalue())


def _ordered(stat_sets: Mapping[str, Any]) -> List[str]:
    rank = {name: index for index, name in enumerate(STAT_SETS_ORDER)}
    return sorted(stat_sets, key=lambda s: (rank.get(s, len(rank)), s))


def short_name(name: str) -> str:
    """The name shown in status lines: without the "loss_" prefix."""
    return name.removeprefix("loss_")


def status_line(
    stat_set: str, epoch: int, values: Mapping[str, float], it: Optional[int] = None, n_its: Optional[int] = None
) -> str:
    """`[train] | epoch   3 | it   10/100 | objective: 0.1234 | rgb_psnr: 23.123` ("objective" first)."""
    parts = [f"[{stat_set}]", f"epoch {epoch:3d}"]
    if it is not None:
        parts.append(f"it {it:4d}/{n_its}" if n_its is not None else f"it {it:4d}")
    ordered = sorted(values, key=lambda name: (name != "objective", name))
    parts += [f"{short_name(name)}: {values[name]:.5g}" for name in ordered]
    return " | ".join(parts)

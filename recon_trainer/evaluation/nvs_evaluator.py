"""NVSEvaluator: renders each test batch's target view and scores it against the ground truth.

results_test.json (written atomically when `dump_to_json`: EvaluatorBase.run) is a list of entries:

    [{"subset": "test", "subsubset": "diff=all", "n_frames": 10,
      "metrics": {"psnr_full_image": 23.1, "psnr_masked": ..., ...},   # averages over frames
      "per_frame": [{"sequence_name": "...", "frame_number": 3, "frame_type": "test_unseen",
                     "n_src": 0, "psnr_full_image": 22.7, ...}, ...],
      "eval_epoch": 12}, ...]

Single-sequence evaluation writes that one entry. Multi-sequence evaluation (`is_multisequence`)
splits the frames by subset, the first part of the target's frame type: "train" targets are unseen
views of the training (seen) sequences, "test" targets belong to sequences never trained on. Each
subset has a "diff=all" entry (with per_frame) and one "n_src=k" entry for each k of
EVAL_N_SRC_VIEWS that occurs, where n_src is the number of source views in the batch (its size
minus the target). Metric names and values are those of `nvs_metrics.eval_frame` under
`metrics_convention` (nvs_metrics' module docstring). With "implicitron" (the default) the metrics
equal Implicitron's eval_batch and each average is the plain mean over the frames, as Implicitron's
average_per_batch_results (a NaN frame makes the average NaN); with "channel_mean" a metric that is
NaN for a frame (e.g. no valid depth) is skipped by the average. Either way a metric a frame lacks
(depth_abs_fg without a depth map) is averaged over the frames that have it, and NaN is written as null.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from recon_trainer.config import registry
from recon_trainer.config.errors import ConfigError
from recon_trainer.evaluation.evaluator import EvaluatorBase, Evaluation, average_rows, json_number
from recon_trainer.evaluation.lpips_loading import LPIPS_MIN_IMAGE_SIZE, LPIPS_NETS, load_lpips
from recon_trainer.evaluation.nvs_metrics import CONVENTIONS, eval_frame
from recon_trainer.models.base import EvaluationMode

# Ground-truth fields of the target frame that the model must not see.
GROUND_TRUTH_FIELDS = ("image_rgb", "fg_probability", "depth_map", "depth_mask", "mask_crop")
EVAL_N_SRC_VIEWS = (1, 3, 5, 7, 9)  # source-view counts reported separately in multi-sequence evaluation


def withhold_target(batch: Any) -> Any:
    """A copy of the FrameData batch in which the target (first frame) has no ground truth.

    A single-frame batch loses the fields (None); with source frames the target's are zeroed.
    """
    changes = {}
    for name in GROUND_TRUTH_FIELDS:
        value = getattr(batch, name)
        if value is None:
            continue
        if value.shape[0] == 1:
            changes[name] = None
        else:
            value = value.clone()
            value[0] = 0
            changes[name] = value
    return dataclasses.replace(batch, **changes)


def _first(value: Any) -> Any:
    """The first frame's entry of a collated per-frame field, as a JSON-friendly value."""
    if isinstance(value, torch.Tensor):
        return value.flatten()[0].item()
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


@registry.register
class NVSEvaluator(EvaluatorBase):
    """Scores the rendered target view of every test batch: PSNR, L1, IoU, depth error, LPIPS.

    The model is called in EVALUATION mode on the batch with the target's ground truth withheld
    and must return images_render (B, 3, H, W), masks_render and depths_render (B, 1, H, W).
    """

    lpips_backbone_weights: Optional[str] = None  # torchvision state dict file of lpips_net's trunk; None: no LPIPS
    lpips_net: str = "vgg"  # LPIPS trunk: "vgg" (VGG-16, as Implicitron's evaluator) or "alex" (AlexNet)
    bg_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour outside the gt mask in masked metrics
    mask_threshold: float = 0.5  # ground-truth fg_probability >= this is foreground
    is_multisequence: bool = False  # split results by subset (seen / unseen sequences) and source-view count
    metrics_convention: str = "implicitron"  # "implicitron": eval_batch's numbers; "channel_mean": see nvs_metrics

    def __post_init__(self) -> None:
        if self.metrics_convention not in CONVENTIONS:
            raise ConfigError(
                f"NVSEvaluator.metrics_convention={self.metrics_convention!r}: expected one of "
                + ", ".join(map(repr, CONVENTIONS))
            )
        if self.lpips_net not in LPIPS_NETS:
            raise ConfigError(f"NVSEvaluator.lpips_net={self.lpips_net!r}: expected one of {sorted(LPIPS_NETS)}")
        self._lpips: Optional[torch.nn.Module] = None
        self._lpips_reported = False
        self._rows: List[Dict[str, Any]] = []
        self._lpips_now: Optional[torch.nn.Module] = None  # the LPIPS network of the current pass

    def _lpips_model(self, device: torch.device) -> Optional[torch.nn.Module]:
        """The LPIPS model on `device`, or None (saying why once) without backbone weights."""
        if self.lpips_backbone_weights is None:
            if not self._lpips_reported:
                print(
                    f"LPIPS not computed: lpips_backbone_weights is not set "
                    f"(a torchvision {LPIPS_NETS[self.lpips_net]} state dict file)"
                )
                self._lpips_reported = True
            return None
        if self._lpips is None:
            self._lpips = load_lpips(self.lpips_backbone_weights, self.lpips_net)
        self._lpips = self._lpips.to(device)
        return self._lpips

    def reset(self, device: torch.device) -> None:
        self._rows = []
        self._lpips_now = self._lpips_model(device)

    def process(self, model: torch.nn.Module, batch: Any) -> None:
        """Render the first frame of the batch (the target, its ground truth withheld) and score it."""
        if batch.image_rgb is None:
            raise ValueError("NVSEvaluator: a test batch has no image_rgb to compare the render with")
        preds = model(withhold_target(batch), evaluation_mode=EvaluationMode.EVALUATION)
        lpips = self._lpips_now
        if lpips is not None and min(batch.image_rgb.shape[-2:]) < LPIPS_MIN_IMAGE_SIZE:
            if not self._lpips_reported:
                print(f"LPIPS not computed: images smaller than {LPIPS_MIN_IMAGE_SIZE} pixels per side")
                self._lpips_reported = True
            lpips = None

        def target(value: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if value is None else value[:1]

        metrics = eval_frame(
            image_render=preds["images_render"][:1],
            mask_render=target(preds.get("masks_render")),
            depth_render=target(preds.get("depths_render")),
            image_gt=batch.image_rgb[:1],
            fg_probability=target(batch.fg_probability),
            depth_gt=target(batch.depth_map),
            depth_mask=target(batch.depth_mask),
            mask_crop=target(batch.mask_crop),
            bg_color=self.bg_color,
            mask_threshold=self.mask_threshold,
            lpips=lpips,
            convention=self.metrics_convention,
        )
        row = {
            "sequence_name": _first(batch.sequence_name),
            "frame_number": _first(batch.frame_number),
            "frame_type": _first(batch.frame_type),
            "n_src": len(batch.image_rgb) - 1,
        }
        row.update({name: float(value[0]) for name, value in metrics.items()})
        self._rows.append(row)

    def compute(self, epoch: Optional[int] = None) -> Evaluation:
        """Averages over the processed frames and the results_test.json entries (module doc)."""
        average = average_frames if self.metrics_convention == "implicitron" else average_rows
        averages = average(self._rows)
        summary = _table(averages, len(self._rows), epoch)
        entries = summarize(self._rows, self.is_multisequence, epoch, average)
        if self.is_multisequence:
            for entry in entries:
                averages.update(
                    {f"{k}|subset={entry['subset']}|{entry['subsubset']}": v for k, v in entry["metrics"].items()}
                )
        return Evaluation(metrics=averages, results=_json_entries(entries), summary=summary)


def average_frames(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """Plain mean of each float field over the rows that have it (NaN propagates), as Implicitron's
    average_per_batch_results; fields in the order they first appear."""
    names: Dict[str, None] = {}
    for row in rows:
        names.update({k: None for k, v in row.items() if isinstance(v, float)})
    averages = {}
    for name in names:
        values = [row[name] for row in rows if name in row]
        averages[name] = math.fsum(values) / len(values) if values else math.nan
    return averages


def summarize(
    per_frame: List[Dict[str, Any]],
    is_multisequence: bool,
    epoch: Optional[int],
    average: Callable[[List[Dict[str, Any]]], Dict[str, float]] = average_frames,
) -> List[Dict[str, Any]]:
    """The results_test.json entries (module doc) of the per-frame rows; metrics are plain floats
    averaged by `average` (average_frames, or evaluator.average_rows to skip NaN)."""

    def entry(subset: str, subsubset: str, rows: List[Dict[str, Any]], with_rows: bool) -> Dict[str, Any]:
        result = {"subset": subset, "subsubset": subsubset, "n_frames": len(rows), "metrics": average(rows)}
        if with_rows:
            result["per_frame"] = rows
        result["eval_epoch"] = epoch
        return result

    if not is_multisequence:
        return [entry("test", "diff=all", per_frame, True)]
    entries = []
    for subset in ("train", "test"):
        rows = [row for row in per_frame if str(row.get("frame_type") or "").split("_")[0] == subset]
        if not rows:
            continue
        entries.append(entry(subset, "diff=all", rows, True))
        for n_src in EVAL_N_SRC_VIEWS:
            with_n = [row for row in rows if row["n_src"] == n_src]
            if with_n:
                entries.append(entry(subset, f"n_src={n_src}", with_n, False))
    return entries


def _json_entries(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Entries with NaN floats (metrics and per-frame values) as None, for JSON."""

    def clean(row: Dict[str, Any]) -> Dict[str, Any]:
        return {k: json_number(v) if isinstance(v, float) else v for k, v in row.items()}

    out = []
    for entry in entries:
        entry = dict(entry, metrics=clean(entry["metrics"]))
        if "per_frame" in entry:
            entry["per_frame"] = [clean(row) for row in entry["per_frame"]]
        out.append(entry)
    return out


def _table(averages: Dict[str, float], n_frames: int, epoch: Optional[int]) -> str:
    title = f"NVS evaluation: {n_frames} frame(s)" + ("" if epoch is None else f", epoch {epoch}")
    width = max([len(name) for name in averages] + [6])
    lines = [title] + [f"  {name:<{width}}  {value:10.4f}" for name, value in averages.items()]
    return "\n".join(lines)

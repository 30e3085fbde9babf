"""Images of a reconstructed sequence for the loggers."""
from __future__ import annotations

import torch

from recon_trainer.visualization.video import colorize_depth


def sequence_panels(rgb: torch.Tensor, points: torch.Tensor, conf: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(3, 3 H, T W) in [0, 1]: the T frames (rgb (T, 3, H, W) in [0, 1]) on top, the predicted
    z in camera 0 (points (T, H, W, 3)) in the middle (ground-truth-valid pixels coloured, one
    range for the sequence), the confidence (conf (T, H, W), log scale) below."""
    rgb, points, conf = rgb.detach().float().cpu(), points.detach().float().cpu(), conf.detach().float().cpu()
    depth = colorize_depth(points[..., 2][:, None], valid.cpu()[:, None].float())
    log_conf = torch.log(conf.clamp(min=1.0))[:, None]
    confidence = colorize_depth(-log_conf, percentile=0.0)
    rows = [torch.cat(list(panel), dim=-1) for panel in (rgb, depth, confidence)]
    return torch.cat(rows, dim=-2).clamp(0, 1)

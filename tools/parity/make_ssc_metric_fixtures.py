"""Make the parity fixture of the SSC metrics: tests/fixtures/symphonies/ssc_metric_parity.npz.

Runs the ORIGINAL Symphonies SSCMetrics (a torchmetrics Metric; ssc_pl/evaluation/ssc_metric.py of
--symphonies_repo, imported by file path, so that ssc_pl's __init__.py and its training stack are not
imported) on fixed random batches of logits and targets and stores what it was given and what it
computed. Nothing in the original is patched. Not run by the test suite; run it as

    PYTHONPATH=/work/ref/deps python tools/parity/make_ssc_metric_fixtures.py \\
        --symphonies_repo /work/ref/symphonies --out tests/fixtures/symphonies

with torchmetrics (1.9) on PYTHONPATH. Content, for case c20 (20 classes, 3 batches of (2, 8, 8, 4)) and
c5 (5 classes, 2 batches of (2, 6, 5, 4); class 3 neither in the targets nor ever predicted, so its IoU
is 0 and counts in the mIoU); the logits favour class 0 (empty), like real volumes:
  <case>_pred, <case>_target     uint8 (batches, B, X, Y, Z): the argmax of the logits given to update()
                                 and the targets (40 % forced to 0, 15 % to 255, ignored)
  <case>_Precision, _Recall, _IoU, _mIoU   float64 scalars: compute()'s results
  <case>_iou_per_class           float64 (C,)
"""
import importlib.util
import os
from typing import Dict, Tuple

import numpy as np
import torch
from reference import reference_args

CASES: Dict[str, Tuple[int, Tuple[int, int, int, int], int]] = {  # classes, batch shape (B, X, Y, Z), batches
    "c20": (20, (2, 8, 8, 4), 3),
    "c5": (5, (2, 6, 5, 4), 2),
}


def load_original(symphonies_repo: str):
    """The original SSCMetrics class."""
    path = os.path.join(symphonies_repo, "ssc_pl", "evaluation", "ssc_metric.py")
    spec = importlib.util.spec_from_file_location("ssc_metric", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SSCMetrics


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "ssc_metric_parity.npz", "symphonies_repo",
                          "checkout of hustvl/Symphonies to import the original ssc_metric.py from")
    metrics_class = load_original(args.symphonies_repo)
    out = {}
    generator = torch.Generator().manual_seed(15)
    for name, (classes, shape, batches) in CASES.items():
        metric = metrics_class(classes)
        preds, targets = [], []
        for _ in range(batches):
            logits = torch.randn((shape[0], classes) + shape[1:], generator=generator)
            logits[:, 0] += 1.0  # skewed towards empty, like real volumes
            target = torch.randint(0, classes, shape, generator=generator)
            target[torch.rand(shape, generator=generator) < 0.4] = 0
            target[torch.rand(shape, generator=generator) < 0.15] = 255
            if name == "c5":
                target[target == 3] = 4  # class 3 absent from the target ...
                logits[:, 3] = -10.0  # ... and never predicted: IoU 0, counted in the mIoU
            metric.update({"ssc_logits": logits}, {"target": target})
            preds.append(logits.argmax(1).to(torch.uint8).numpy())
            targets.append(target.to(torch.uint8).numpy())
        result = metric.compute()
        out[f"{name}_pred"] = np.stack(preds)
        out[f"{name}_target"] = np.stack(targets)
        for key in ("Precision", "Recall", "IoU", "mIoU"):
            out[f"{name}_{key}"] = np.float64(float(result[key]))
        out[f"{name}_iou_per_class"] = result["iou_per_class"].double().numpy()
        print(name, {k: float(result[k]) for k in ("Precision", "Recall", "IoU", "mIoU")})
    path = os.path.join(args.out, "ssc_metric_parity.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()

"""Make the parity fixture of Symphonies' SSC losses: tests/fixtures/symphonies/losses_parity.pt.

Runs the ORIGINAL ce_ssc_loss, sem_scal_loss, geo_scal_loss and frustum_proportion_loss
(ssc_pl/models/losses/ssc_loss.py of --symphonies_repo, imported by file path, so that ssc_pl's
__init__.py and its training stack are not imported) on fixed random volumes and stores the inputs, the
losses and their gradients with respect to the logits. Nothing in the original is patched. Not run by the
test suite; run it as

    python tools/parity/make_symphonies_loss_fixtures.py --symphonies_repo /work/ref/symphonies \\
        --out tests/fixtures/symphonies

(ssc_loss.py needs torch only). Content (5 classes, grid (6, 5, 4), 4 frustums: the x-y plane split
into 2 x 2 tiles):
  b1, b2/inputs      logits (B, 5, 6, 5, 4), target (B, 6, 5, 4) int64 with 255 (ignored) voxels,
                     class_weights (5,), frustum_masks (B, 4, 6, 5, 4) bool, class_counts (B, 4, 5):
                     b1 (B 1) has class 3 absent and a frustum of only 255 voxels, b2 (B 2); frustum 3
                     of sample 0 is empty
  b1, b2/outputs     value_<loss> (a scalar), grad_<loss> d value / d logits, for <loss> ce_ssc,
                     sem_scal, geo_scal, frustum
  aux/outputs        (3, 2, 5, 6, 5, 4): three layers' logits (b2's plus noise)
  aux/losses         loss_<loss>: sum over the layers of the loss x (1 for the last layer, 0.5 before),
                     Symphonies.loss's weighting of the auxiliary outputs
  source             where the values come from (a string)
"""
import importlib.util
import os
from typing import Dict, List, Optional, Tuple

import torch
from reference import reference_args

CLASSES, SHAPE, SIZE = 5, (6, 5, 4), 2  # classes, grid, frustum_size (SIZE * SIZE frustums)
SOURCE = "ssc_pl/models/losses/ssc_loss.py of hustvl/Symphonies, run by tools/parity/make_symphonies_loss_fixtures.py"


def load_original(symphonies_repo: str) -> Dict:
    """The original loss functions by fixture name."""
    path = os.path.join(symphonies_repo, "ssc_pl", "models", "losses", "ssc_loss.py")
    spec = importlib.util.spec_from_file_location("original_ssc_loss", path)
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)
    return {"ce_ssc": original.ce_ssc_loss, "sem_scal": original.sem_scal_loss,
            "geo_scal": original.geo_scal_loss, "frustum": original.frustum_proportion_loss}


def make_case(batch: int, seed: int, absent_class: Optional[int] = None) -> Dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, CLASSES, *SHAPE, generator=generator) * 2.0
    target = torch.randint(0, CLASSES, (batch, *SHAPE), generator=generator)
    if absent_class is not None:
        target[target == absent_class] = 0
    target[torch.rand(batch, *SHAPE, generator=generator) < 0.2] = 255
    # frustums: the grid's x-y plane split into 2 x 2 tiles (a stand-in for image tiles); the last
    # frustum is empty in sample 0 (no counts there), so "frustums with no counts" are exercised
    masks = torch.zeros(batch, SIZE * SIZE, *SHAPE, dtype=torch.bool)
    xs, ys = SHAPE[0] // 2, SHAPE[1] // 2
    for f in range(SIZE * SIZE):
        i, j = divmod(f, SIZE)
        masks[:, f, i * xs:(i + 1) * xs if i == 0 else None, j * ys:(j + 1) * ys if j == 0 else None] = True
    masks[0, -1] = False
    counts = torch.zeros(batch, SIZE * SIZE, CLASSES)
    for b in range(batch):
        for f in range(SIZE * SIZE):
            labels = target[b][masks[b, f] & (target[b] != 255)]
            counts[b, f] = torch.bincount(labels, minlength=CLASSES).float()
    if batch == 1:  # a frustum with voxels but only 255 labels: no counts
        masks[0, 2] = False
        masks[0, 2, 0, 0, 0] = True
        target[0, 0, 0, 0] = 255
        counts[0, 2] = 0
    weights = torch.rand(CLASSES, generator=generator) + 0.05
    return {"logits": logits, "target": target, "class_weights": weights, "frustum_masks": masks,
            "class_counts": counts}


def original_target(case: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The case as the original's target dict."""
    return {"target": case["target"], "class_weights": case["class_weights"],
            "frustums_masks": case["frustum_masks"], "frustums_class_dists": case["class_counts"]}


def run_case(losses: Dict, case: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for name, fn in losses.items():
        logits = case["logits"].clone().requires_grad_(True)
        value = fn({"ssc_logits": logits}, original_target(case))
        value.backward()
        out[f"value_{name}"] = value.detach()
        out[f"grad_{name}"] = logits.grad.detach().clone()
    return out


def aux_case(losses: Dict, case: Dict[str, torch.Tensor],
             layers: int = 3) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
    """Symphonies.loss's weighting: each layer's loss x (1 for the last, 0.5 before), summed per criterion here."""
    generator = torch.Generator().manual_seed(99)
    outputs = [case["logits"] + torch.randn(case["logits"].shape, generator=generator) for _ in range(layers)]
    sums = {}
    for i, pred in enumerate(outputs):
        scale = 1 if i == layers - 1 else 0.5
        for name, fn in losses.items():
            sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0) + fn({"ssc_logits": pred}, original_target(case)) * scale
    return outputs, sums


def main() -> None:
    args = reference_args(__doc__.splitlines()[0], "losses_parity.pt", "symphonies_repo",
                          "checkout of hustvl/Symphonies to import the original ssc_loss.py from")
    losses = load_original(args.symphonies_repo)
    cases = {"b1": make_case(1, 0, absent_class=3), "b2": make_case(2, 1)}
    fixture = {key: {"inputs": case, "outputs": run_case(losses, case)} for key, case in cases.items()}
    outputs, sums = aux_case(losses, cases["b2"])
    fixture["aux"] = {"outputs": torch.stack(outputs), "losses": sums}
    fixture["source"] = SOURCE
    path = os.path.join(args.out, "losses_parity.pt")
    torch.save(fixture, path)
    for key in cases:
        print(key, {k: float(v) for k, v in fixture[key]["outputs"].items() if k.startswith("value")})
    print("aux", {k: float(v) for k, v in sums.items()})
    print(f"wrote {path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()

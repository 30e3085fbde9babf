"""Make the parity fixture of the NVS metrics: tests/fixtures/implicitron/metrics.pt.

Runs the ORIGINAL `pytorch3d.implicitron.evaluation.evaluate_new_view_synthesis.eval_batch` (and its
`average_per_batch_results`) on fixed synthetic evaluation batches and stores, per case, the batch,
the render and the metric dict eval_batch returned. Nothing in the original is patched. Not run by the
test suite; run it with a Python in which pytorch3d (built from source, DEVELOPERS.md) imports, e.g.

    /work/ref/p3venv/bin/python tools/parity/make_implicitron_metric_fixtures.py \\
        --pytorch3d_repo /work/ref/pytorch3d --out tests/fixtures/implicitron

(--pytorch3d_repo is put first on the import path only when it holds a built `pytorch3d/_C*`; otherwise
the installed pytorch3d is used; the script prints which). eval_batch imports tabulate and plotly.

Every case is a batch of frames (the first is the target, the others are source views whose ground
truth eval_batch ignores) with ground truth 16x16 and, unless said otherwise, float64 tensors:
  clamp         gt 1.0 everywhere, render 1.2 (and one render pixel -0.3): 100 dB after the clamp
  full          random everything at lower render resolution (image 8x12, bilinear; mask and depth 8x8,
                nearest), soft fg_probability, depth with zeros and a depth_mask, mask_crop with zero
                rows and columns; 2 frames
  full_f32      the same in float32
  no_fg         no fg_probability and no mask_crop (the whole image is foreground and valid)
  no_depth      no depth_map (eval_batch reports no depth_abs_fg)
  empty_depth   an all-zero depth_map (depth_abs_fg 0)
  empty_fg      fg_probability below the threshold everywhere (empty _fg masks)
  soft_crop     a soft mask_crop (0.3 / 0.6 / 1.0) and a soft depth_mask
  small_depth   depths around 0.01, so the 1e-4 floor of the best-scale denominator applies
  bg_color      bg_color (0.2, 0.5, 1.0) instead of black
  lpips_stub    lpips_model: a stand-in with forward(a, b) = mean |a - 0.5 b| per image (not
                symmetric, so the argument order and the clamp to [0, 1] are part of the check)
Fixture layout: {"cases": {name: {"frame": {field: tensor}, "render": {"image_render", "mask_render",
"depth_render"}, "bg_color": [r, g, b], "lpips_stub": bool, "metrics": {key: float}}},
"average": {"cases": [names], "metrics": {key: float}}} where "average" is average_per_batch_results
over the named cases' metric dicts.
"""
import os
from typing import Any, Dict, List, Optional

import torch
from reference import pytorch3d_args

H, W = 16, 16
AVERAGED = ["clamp", "full", "no_fg", "empty_depth", "empty_fg", "soft_crop", "small_depth"]  # black background


class LpipsStub(torch.nn.Module):
    """forward(a, b) = mean |a - 0.5 b| over each image, (B, 1, 1, 1); the same stand-in is in the test."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - 0.5 * b).abs().mean(dim=(1, 2, 3), keepdim=True)


def make_case(name: str, generator: torch.Generator) -> Dict[str, Any]:
    """The batch (frame fields, (N, C, H, W)), render ((N, C, h, w)), bg_color and lpips flag of a case."""
    n = 2 if name.startswith("full") else 1
    dtype = torch.float32 if name == "full_f32" else torch.float64

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64)

    image = rand(n, 3, H, W)
    fg = rand(n, 1, H, W)
    depth = 1.0 + 3.0 * rand(n, 1, H, W)
    depth[rand(n, 1, H, W) < 0.2] = 0.0
    depth_mask = (rand(n, 1, H, W) > 0.15).double()
    mask_crop = torch.ones(n, 1, H, W, dtype=torch.float64)
    mask_crop[:, :, :2] = 0.0
    mask_crop[:, :, :, -3:] = 0.0
    render_hw = (H, W)
    image_render = -0.2 + 1.4 * rand(n, 3, *render_hw)
    bg_color = [0.0, 0.0, 0.0]
    if name == "clamp":
        image = torch.ones(n, 3, H, W, dtype=torch.float64)
        image_render = torch.full((n, 3, H, W), 1.2, dtype=torch.float64)
        image_render[:, :, 3, 4] = -0.3  # clamped to 0: an error of 1 in one pixel
    if name.startswith("full"):
        image_render = -0.2 + 1.4 * rand(n, 3, 8, 12)
        render_hw = (8, 8)
    mask_render = rand(n, 1, *render_hw)
    depth_render = 0.5 + rand(n, 1, *render_hw)
    frame: Dict[str, Optional[torch.Tensor]] = {
        "image_rgb": image, "fg_probability": fg, "depth_map": depth, "depth_mask": depth_mask, "mask_crop": mask_crop,
    }
    if name == "no_fg":
        frame["fg_probability"] = None
        frame["mask_crop"] = None
    if name == "no_depth":
        frame["depth_map"] = None
        frame["depth_mask"] = None
    if name == "empty_depth":
        frame["depth_map"] = torch.zeros_like(depth)
    if name == "empty_fg":
        frame["fg_probability"] = 0.4 * fg
    if name == "soft_crop":
        frame["mask_crop"] = torch.tensor([0.3, 0.6, 1.0], dtype=torch.float64)[
            torch.randint(0, 3, (n, 1, H, W), generator=generator)
        ]
        frame["depth_mask"] = 0.5 + 0.5 * depth_mask * rand(n, 1, H, W)
    if name == "small_depth":
        frame["depth_map"] = depth * 0.004
        depth_render = depth_render * 0.003
    if name == "bg_color":
        bg_color = [0.2, 0.5, 1.0]
    render = {"image_render": image_render, "mask_render": mask_render, "depth_render": depth_render}
    frame = {k: v.to(dtype) for k, v in frame.items() if v is not None}
    render = {k: v.to(dtype) for k, v in render.items()}
    return {"frame": frame, "render": render, "bg_color": bg_color, "lpips_stub": name == "lpips_stub"}


def run_eval_batch(case: Dict[str, Any]) -> Dict[str, Any]:
    """eval_batch's result dict (metrics and "meta") for a case."""
    from pytorch3d.implicitron.dataset.frame_data import FrameData
    from pytorch3d.implicitron.evaluation.evaluate_new_view_synthesis import eval_batch
    from pytorch3d.implicitron.models.base_model import ImplicitronRender
    from pytorch3d.renderer.cameras import PerspectiveCameras

    fields = {k: v.clone() for k, v in case["frame"].items()}
    n = len(fields["image_rgb"])
    frame_data = FrameData(
        frame_number=torch.arange(n),
        sequence_name=["seq"] * n,
        frame_type=["test_unseen"] + ["test_known"] * (n - 1),
        camera=PerspectiveCameras(R=torch.eye(3).expand(n, 3, 3), T=torch.zeros(n, 3)),
        **fields,
    )
    render = ImplicitronRender(**{k: v.clone() for k, v in case["render"].items()})
    results = eval_batch(
        frame_data,
        render,
        bg_color=list(case["bg_color"]),
        lpips_model=LpipsStub() if case["lpips_stub"] else None,
    )
    return results


def main() -> None:
    args = pytorch3d_args(__doc__.splitlines()[0], "metrics.pt")
    from pytorch3d.implicitron.evaluation.evaluate_new_view_synthesis import average_per_batch_results

    generator = torch.Generator().manual_seed(16)
    names: List[str] = ["clamp", "full", "full_f32", "no_fg", "no_depth", "empty_depth", "empty_fg", "soft_crop",
                        "small_depth", "bg_color", "lpips_stub"]
    cases, results = {}, {}
    for name in names:
        case = make_case(name, generator)
        results[name] = run_eval_batch(case)
        case["metrics"] = {k: v for k, v in results[name].items() if k != "meta"}
        cases[name] = case
        print(name, {k: round(v, 6) for k, v in case["metrics"].items()})
    average = average_per_batch_results([results[name] for name in AVERAGED])
    print("average", {k: round(v, 6) for k, v in average.items()})
    path = os.path.join(args.out, "metrics.pt")
    torch.save({"cases": cases, "average": {"cases": AVERAGED, "metrics": average}}, path)
    print(f"wrote {path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()

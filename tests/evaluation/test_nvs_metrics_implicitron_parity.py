"""NVS metrics against Implicitron's own eval_batch on identical inputs.

tests/fixtures/implicitron/metrics.pt was written by running the original
`pytorch3d.implicitron.evaluation.evaluate_new_view_synthesis.eval_batch` (pytorch3d built from source)
with tools/parity/make_implicitron_metric_fixtures.py, whose docstring lists the cases (renders outside
[0, 1], lower render resolution, missing fg_probability / mask_crop / depth, empty depth, soft masks,
small depths, a coloured background, an LPIPS stand-in). Here `eval_frame` and `NVSEvaluator` (default
convention "implicitron") score the same inputs and must give the same metric keys and values.
"""

import json
import math
import os

import pytest
import torch

from recon_trainer.config import get_default_args
from recon_trainer.data.frame_data import FrameData
from recon_trainer.evaluation.nvs_evaluator import NVSEvaluator
from recon_trainer.evaluation.nvs_metrics import eval_frame

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "implicitron", "metrics.pt")
TOLERANCE = 1e-5  # absolute, relative above 1
ROW_FIELDS = ("sequence_name", "frame_number", "frame_type", "n_src")  # per-frame fields that are not metrics


def load_fixture():
    return torch.load(FIXTURE, weights_only=True)


FIXTURE_DATA = load_fixture()
CASES = FIXTURE_DATA["cases"]


def lpips_stub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The fixture script's LpipsStub: mean |a - 0.5 b| per image, (B, 1, 1, 1)."""
    return (a - 0.5 * b).abs().mean(dim=(1, 2, 3), keepdim=True)


def assert_metrics_equal(ours, theirs, where):
    assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != Implicitron's {list(theirs)}"
    for key, expected in theirs.items():
        value = float(ours[key])
        assert abs(value - expected) <= TOLERANCE * max(1.0, abs(expected)), f"{where} {key}: {value} != {expected}"


@pytest.mark.parametrize("name", list(CASES))
def test_eval_frame_equals_eval_batch(name):
    case = CASES[name]
    frame, render = case["frame"], case["render"]

    def target(key):
        return frame[key][:1] if key in frame else None

    ours = eval_frame(
        image_render=render["image_render"][:1],
        mask_render=render["mask_render"][:1],
        depth_render=render["depth_render"][:1],
        image_gt=frame["image_rgb"][:1],
        fg_probability=target("fg_probability"),
        depth_gt=target("depth_map"),
        depth_mask=target("depth_mask"),
        mask_crop=target("mask_crop"),
        bg_color=case["bg_color"],
        lpips=lpips_stub if case["lpips_stub"] else None,
    )
    assert all(value.shape == (1,) for value in ours.values())
    assert_metrics_equal(ours, case["metrics"], name)


class FixtureRenderer(torch.nn.Module):
    """Returns the fixture's render of the batch whose target frame has the given frame_number."""

    def __init__(self, renders):
        super().__init__()
        self.renders = renders

    def forward(self, batch, evaluation_mode):
        assert batch.image_rgb is None or torch.all(batch.image_rgb[0] == 0)  # ground truth withheld
        render = self.renders[int(batch.frame_number[0])]
        return {"images_render": render["image_render"], "masks_render": render["mask_render"],
                "depths_render": render["depth_render"]}


def fixture_batch(index: int, case) -> FrameData:
    n = len(case["frame"]["image_rgb"])
    return FrameData(
        **case["frame"],
        frame_number=torch.arange(index, index + n),
        sequence_name=["seq"] * n,
        frame_type=["test_unseen"] + ["test_known"] * (n - 1),
    )


def run_evaluator(names, tmp_path=None, bg_color=(0.0, 0.0, 0.0)):
    """NVSEvaluator (default fields but bg_color) over the named cases: averages, and the per-frame
    rows of results_test.json when tmp_path is given."""
    model = FixtureRenderer({100 * i: CASES[name]["render"] for i, name in enumerate(names)})
    evaluator = NVSEvaluator(**{**get_default_args(NVSEvaluator), "bg_color": bg_color})
    loader = [fixture_batch(100 * i, CASES[name]) for i, name in enumerate(names)]
    exp_dir = None if tmp_path is None else str(tmp_path)
    averages = evaluator.run(model=model, dataloader=loader, device=torch.device("cpu"), exp_dir=exp_dir,
                             dump_to_json=tmp_path is not None)
    if tmp_path is None:
        return averages, None
    with open(os.path.join(tmp_path, "results_test.json")) as f:
        return averages, json.load(f)[0]["per_frame"]


def test_evaluator_per_frame_metrics_and_averages_equal_implicitron(tmp_path):
    by_bg_color = {}
    for name, case in CASES.items():
        if not case["lpips_stub"]:  # LPIPS needs backbone weights and 32 pixels: eval_frame's test covers it
            by_bg_color.setdefault(tuple(case["bg_color"]), []).append(name)
    assert len(by_bg_color) == 2
    for bg_color, names in by_bg_color.items():
        _, rows = run_evaluator(names, tmp_path, bg_color)
        for name, row in zip(names, rows):
            metrics = {k: v for k, v in row.items() if k not in ROW_FIELDS}
            assert_metrics_equal(metrics, CASES[name]["metrics"], name)

    averages, _ = run_evaluator(FIXTURE_DATA["average"]["cases"])  # Implicitron's average_per_batch_results
    assert_metrics_equal(averages, FIXTURE_DATA["average"]["metrics"], "average")


def test_channel_mean_convention_differs_only_where_documented():
    case = CASES["full"]
    frame, render = case["frame"], case["render"]
    inputs = dict(
        image_render=render["image_render"][:1], mask_render=render["mask_render"][:1],
        depth_render=render["depth_render"][:1], image_gt=frame["image_rgb"][:1],
        fg_probability=frame["fg_probability"][:1], depth_gt=frame["depth_map"][:1],
        depth_mask=frame["depth_mask"][:1], mask_crop=frame["mask_crop"][:1],
    )
    ours = eval_frame(**inputs, convention="channel_mean")
    theirs = case["metrics"]
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        if key.startswith("rgb_l1"):
            assert float(value) == pytest.approx(theirs[key] / 3, rel=1e-6)
        elif key != "depth_abs_fg":  # the exact scale: equal here, as mean(pred^2) is above the 1e-4 floor
            assert float(value) == pytest.approx(theirs[key], rel=1e-6)
    assert float(ours["depth_abs_fg"]) == pytest.approx(theirs["depth_abs_fg"], rel=1e-6)
    empty = dict(inputs, depth_gt=torch.zeros_like(inputs["depth_gt"]))
    assert math.isnan(float(eval_frame(**empty, convention="channel_mean")["depth_abs_fg"]))

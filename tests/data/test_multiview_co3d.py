"""Co3d (data/multiview/co3d.py) on a tiny synthetic copy in DUSt3R's preprocessed CO3D layout
(data/formats/co3d_dust3r.py): values read back, geometry across views, the samplers, mask_bg,
rejected draws, malformed files and the original expressions."""
import itertools
import os

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.data.formats import co3d_dust3r
from recon_trainer.config import registry
from recon_trainer.data.mixing import MixableDataset, build_mixture
from recon_trainer.data.multiview import synthetic_views
from recon_trainer.data.multiview.co3d import Co3d, depth_span_ok, frame_combinations
from recon_trainer.data.records import intrinsics_corner_to_centre
from recon_trainer.errors import DataFileError
from tests.data.multiview_helpers import depth_agreement

FRAMES = 16  # frames per tiny sequence
SIZE_HW = (48, 64)
CATEGORY = co3d_dust3r.SYNTHETIC_CATEGORY


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The tiny copy: two sequences per split, FRAMES frames each, at SIZE_HW."""
    return co3d_dust3r.write_synthetic_copy(str(tmp_path_factory.mktemp("co3d") / "co3d"), 2, FRAMES, SIZE_HW, seed=1)


def _sequences(root, split="train"):
    return list(co3d_dust3r.read_selected_sequences(root, split))


def test_frames_read_back_as_rendered(root):
    views = synthetic_views.render_object_orbit(FRAMES, SIZE_HW, 1, 0)
    category, sequence = _sequences(root)[0]
    assert category == CATEGORY
    frames = co3d_dust3r.read_selected_sequences(root, "train")[(category, sequence)]
    assert frames == list(range(1, FRAMES + 1))
    for k in (0, 5):
        view = co3d_dust3r.read_frame(root, category, sequence, frames[k])
        maximum = float(views.depth[k].max())
        assert view.extras["maximum_depth"] == pytest.approx(maximum, rel=1e-6)
        # uint16 of depth / max, truncated: within one step of the value, never above it
        difference = views.depth[k] - view.depth.numpy()
        assert difference.min() >= -1e-5 and difference.max() <= maximum / 65535 + 1e-5
        assert torch.equal(view.mask_fg, torch.from_numpy(views.object_mask[k]))
        assert torch.allclose(view.intrinsics.double(), torch.from_numpy(views.intrinsics), atol=1e-4)
        assert torch.allclose(view.camera_to_world.double(), torch.from_numpy(views.camera_to_world[k]), atol=1e-5)
        assert view.sequence == f"{category}/{sequence}" and view.path.endswith(f"frame{frames[k]:06d}.jpg")
        assert np.abs(view.image.permute(1, 2, 0).numpy() * 255 - views.rgb[k]).mean() < 3  # JPEG


def test_views_agree_in_space_after_the_crop(root):
    dataset = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=3, use_comb=False, mask_bg=False,
                   aug_crop=4, min_thresh=2, max_thresh=3)
    item = dataset[(0, 5, 1)]
    assert len(item) == 3 and all(v.image.shape == (3, 24, 32) for v in item.views)
    assert item.views[0].mask_fg is None  # mask_bg=False reads no mask
    assert depth_agreement(item.views[0], item.views[1]) < 0.05  # 32x24: a pixel spans a few % of depth
    assert depth_agreement(item.views[2], item.views[1]) < 0.05
    category, sequence = item.sequence.split("/")
    full = [co3d_dust3r.read_frame(root, category, sequence, int(v.frame), with_mask=False) for v in item.views]
    assert depth_agreement(full[0], full[1]) < 0.02
    full[1].camera_to_world = torch.linalg.inv(full[1].camera_to_world)  # as if the file held world-to-camera
    assert depth_agreement(full[0], full[1]) > 0.1


def test_mask_bg_zeroes_the_background(root):
    masked = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=2, mask_bg=True, comb_frames=FRAMES)
    for view in masked[(3, 0, 3)].views:
        assert view.depth_valid().any() and not (view.depth[~view.mask_fg] > 0).any()
    plain = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=2, mask_bg=False, comb_frames=FRAMES)
    assert all(v.mask_fg is None and v.depth_valid().all() for v in plain[(3, 0, 3)].views)
    rand = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=2, mask_bg="rand", comb_frames=FRAMES)
    background = {bool((item.views[0].depth[~item.views[0].mask_fg] > 0).any())
                  for item in (rand[(i, 0, i)] for i in range(12))}
    assert background == {True, False}  # one coin per item


def test_combinations_as_the_original():
    for num, frames, lb, ub in ((3, 30, 0, 30), (4, 40, 0, 30), (2, 100, 0, 30), (3, 30, 5, 20)):
        reference = [c for c in itertools.combinations(range(frames), num)
                     if all(lb < abs(x - y) <= ub and abs(x - y) % 5 == 0 for x, y in zip(c, c[1:]))]
        assert [tuple(row) for row in frame_combinations(num, frames, lb, ub)] == reference
    assert len(frame_combinations(5, 100, 0, 30)) == 39160  # Spann3R's default num_seq with use_comb
    assert len(frame_combinations(2, 100, 0, 30)) == 495  # DUSt3R's pairs per sequence (len(self.combinations))


def test_combination_items(root):
    dataset = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=3, comb_frames=FRAMES, mask_bg=False)
    combinations = frame_combinations(3, FRAMES, 0, 30)
    assert dataset.items_per_sequence == len(combinations) and len(dataset) == 2 * len(combinations)
    for index in range(0, len(dataset), 7):
        frames = [int(v.frame) for v in dataset[(index, 2, index)].views]
        positions = np.array(frames) - 1
        # some combination, each position jittered by at most 4 and clamped
        near = np.abs(combinations - positions[None]).max(axis=1) <= 4
        assert near.any(), frames


def test_depth_span_rule():
    assert depth_span_ok([2.0, 3.0, 5.0]) and depth_span_ok([])
    assert not depth_span_ok([1.0, 2.0, 150.0])  # max / min > 100
    assert not depth_span_ok([1.0, 20.0, 15.0])  # max / first > 10
    assert depth_span_ok([10.0, 1.0, 100.0])  # 100 / 1 = 100 and 100 / 10 = 10 are allowed
    assert not depth_span_ok([0.0, 1.0])


def test_empty_frame_is_remembered_and_avoided(tmp_path):
    root = co3d_dust3r.write_synthetic_copy(str(tmp_path / "co3d"), 1, 8, (24, 32), seed=2)
    category, sequence = _sequences(root)[0]
    path = co3d_dust3r.frame_paths(root, category, sequence, 4)["depth"]
    Image.fromarray(np.zeros((24, 32), dtype=np.uint16)).save(path)
    dataset = Co3d(split="train", ROOT=root, resolution=(32, 24), num_views=2, use_comb=False, mask_bg=False,
                   min_thresh=2, max_thresh=2, items_per_sequence=1)
    drawn = [int(v.frame) for i in range(40) for v in dataset[(0, i, 0)].views]
    assert 4 not in drawn
    assert (f"{category}/{sequence}", 4) in dataset._invalid


def test_malformed_files_name_themselves(root, tmp_path):
    with pytest.raises(DataFileError, match="selected_seqs_val.json"):
        co3d_dust3r.read_selected_sequences(root, "val")
    category, sequence = _sequences(root)[0]
    broken = str(tmp_path / "broken")
    os.makedirs(os.path.join(broken, category, sequence, "images"))
    np.savez(os.path.join(broken, category, sequence, "images", "frame000001.npz"), camera_pose=np.eye(3))
    with pytest.raises(DataFileError, match="frame000001.npz"):
        co3d_dust3r.read_frame(broken, category, sequence, 1)
    with open(os.path.join(broken, "selected_seqs_train.json"), "w") as file:
        file.write('{"teddybear": {"1_2_3": ["frame1"]}}')
    with pytest.raises(DataFileError, match="selected_seqs_train.json.*frame numbers"):
        co3d_dust3r.read_selected_sequences(broken, "train")


@pytest.mark.parametrize("text", [
    # Spann3R's training terms and test term (spann3r/training.py), DUSt3R's demo terms (README)
    "10000 @ Co3d(split='train', ROOT='co3d', resolution=224, num_frames=5, mask_bg='rand', transform=ColorJitter)",
    "10000 @ Co3d(split='train', ROOT='co3d', resolution=224, num_frames=5, mask_bg='rand', transform=ColorJitter, "
    "use_comb=False)",
    "1000 @ Co3d(split='test', ROOT='co3d', resolution=224, num_frames=5, mask_bg=False, seed=777)",
    "1000 @ Co3d(split='train', ROOT='co3d', aug_crop=16, mask_bg='rand', resolution=224, transform=ColorJitter, "
    "num_frames=2)",
])
def test_original_expressions_compose(root, text, monkeypatch):
    # The NVS reader of the raw CO3D layout (data/providers/co3d) is registered as Co3d too: until one of
    # the two is renamed, the name resolves to whichever module was imported last.
    monkeypatch.setitem(registry._implementations.setdefault(MixableDataset, {}), "Co3d", Co3d)
    mixture = build_mixture(text, data_root=os.path.dirname(root))
    assert mixture.labels() == ["Co3d"]
    item = mixture[(5, 3)]
    assert all(v.image.shape == (3, 224, 224) and v.depth_valid().any() for v in item.views)
    assert len(item) == (2 if "num_frames=2" in text else 5)
    if "seed=777" in text:  # a fixed seed: the leaf's item i is the same in every epoch and draw
        leaf = mixture.children[0]
        while hasattr(leaf, "dataset"):
            leaf = leaf.dataset
        first, again = leaf[(7, 3, 7)], leaf[(7, 4, 11)]
        assert [int(v.frame) for v in again.views] == [int(v.frame) for v in first.views]
        assert all(torch.equal(a.image, b.image) for a, b in zip(first.views, again.views))


def test_intrinsics_stay_in_the_records_convention(root):
    category, sequence = _sequences(root)[0]
    view = co3d_dust3r.read_frame(root, category, sequence, 1, with_mask=False)
    with np.load(co3d_dust3r.frame_paths(root, category, sequence, 1)["meta"]) as data:
        stored = torch.from_numpy(data["camera_intrinsics"])
    assert torch.allclose(intrinsics_corner_to_centre(view.intrinsics), stored)
    assert view.mask_fg is None

"""DUSt3R's crop and resize of a view (data/multiview/crop.py) and the CroppedSequences base."""
import math
from typing import Any, List

import pytest
import torch

from recon_trainer.config import ConfigError
from recon_trainer.data.mixing.expression import build_leaves
from recon_trainer.data.multiview import CroppedSequences, crop_resize_like_dust3r, parse_resolution
from recon_trainer.data.records import ViewRecord, intrinsics_centre_to_corner, intrinsics_corner_to_centre
from recon_trainer.data.sampling.sequences import SequenceEntry
from recon_trainer.errors import DataFileError

# The original (Spann3R's copy of dust3r, _crop_resize_if_necessary, aug_crop=0) on a depth map whose
# value encodes its pixel (1000 * row + column): the source rows and columns of the output pixels, and
# its K (integer pixel centres). Image size (H, W), K (OpenCV), target (W, H).
ORIGINAL_CASES = [
    ((48, 64), [[60, 0, 33.2], [0, 61, 22.7], [0, 0, 1]], (32, 24),
     [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44],
     [2, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54,
      56, 58, 60, 62],
     [[31.3043, 0.0, 15.8652], [0.0, 31.8261, 11.6043], [0.0, 0.0, 1.0]]),
    ((64, 48), [[60, 0, 23.4], [0, 61, 30.6], [0, 0, 1]], (40, 30),  # portrait: output 30 x 40
     [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29, 31, 32, 34, 35, 37, 38, 40, 41, 43,
      44, 46, 48, 49, 51, 52, 54, 55, 57, 58, 60],
     [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 23, 24, 26, 27, 29, 30, 32, 33, 35, 36, 38, 39, 41, 42,
      44],
     [[39.1304, 0.0, 15.0870], [0.0, 39.7826, 19.5652], [0.0, 0.0, 1.0]]),
]


def _view(height: int, width: int, intrinsics_opencv, depth=None, seed: int = 0) -> ViewRecord:
    generator = torch.Generator().manual_seed(seed)
    if depth is None:
        depth = 1.0 + torch.rand(height, width, generator=generator)
    pose = torch.eye(4)
    pose[:3, :3] = torch.linalg.qr(torch.randn(3, 3, generator=generator))[0]
    pose[:3, 3] = torch.randn(3, generator=generator)
    return ViewRecord(torch.rand(3, height, width, generator=generator), depth=depth,
                      intrinsics=intrinsics_centre_to_corner(torch.tensor(intrinsics_opencv, dtype=torch.float32)),
                      camera_to_world=pose, path="frame.jpg")


@pytest.mark.parametrize("size, intrinsics, target, rows, cols, original_k", ORIGINAL_CASES)
def test_crop_takes_the_originals_pixels(size, intrinsics, target, rows, cols, original_k):
    height, width = size
    index = torch.arange(height)[:, None] * 1000.0 + torch.arange(width)[None, :]
    out = crop_resize_like_dust3r(_view(height, width, intrinsics, depth=index), target)
    assert out.depth.shape == (len(rows), len(cols))
    assert torch.equal(out.depth, torch.tensor(rows)[:, None] * 1000.0 + torch.tensor(cols)[None, :])
    # K: ours scales by the exact resize factor, the original by its rounded-up factor (< 1/24 apart here)
    ours = intrinsics_corner_to_centre(out.intrinsics)
    assert torch.allclose(ours, torch.tensor(original_k), atol=1.0, rtol=1.0 / min(target))


def test_points_keep_their_pixels():
    """A world point unprojected from an output pixel's depth projects back into that pixel, and the
    source point of the pixel (nearest sampling) lands within a pixel of it."""
    view = _view(60, 80, [[70, 0, 41.3], [0, 70, 28.9], [0, 0, 1]])
    out = crop_resize_like_dust3r(view, (32, 24), aug_crop=5, generator=torch.Generator().manual_seed(3))
    points = out.points_world()
    projection = view.project(points)
    assert projection.in_view.all()
    back = out.project(points)
    centres = torch.stack(torch.meshgrid(torch.arange(24) + 0.5, torch.arange(32) + 0.5, indexing="ij")[::-1], -1)
    assert torch.allclose(back.pixels, centres, atol=1e-3)
    source = view.points_world()[projection.pixels[..., 1].long(), projection.pixels[..., 0].long()]
    assert (out.project(source).pixels - centres).abs().max() < 1.0


def test_crop_only_is_exact_and_keeps_the_rest():
    view = _view(40, 40, [[50, 0, 19.5], [0, 50, 19.5], [0, 0, 1]])
    view.mask_valid = torch.rand(40, 40) > 0.5
    out = crop_resize_like_dust3r(view, (40, 40))
    assert torch.equal(out.depth, view.depth) and torch.equal(out.mask_valid, view.mask_valid)
    assert torch.allclose(out.image, view.image, atol=0.5 / 255) and torch.equal(out.intrinsics, view.intrinsics)
    assert torch.equal(out.camera_to_world, view.camera_to_world) and out.path == view.path


def test_orientation_and_aug_crop():
    portrait = crop_resize_like_dust3r(_view(64, 40, [[50, 0, 19.5], [0, 50, 31.5], [0, 0, 1]]), (32, 24))
    assert portrait.image_size_hw == (32, 24)
    square = _view(40, 40, [[50, 0, 19.5], [0, 50, 19.5], [0, 0, 1]])
    shapes = {crop_resize_like_dust3r(square, (32, 24), generator=torch.Generator().manual_seed(s)).image_size_hw
              for s in range(16)}
    assert shapes == {(24, 32), (32, 24)}  # a near-square view takes either orientation
    for seed in range(4):
        out = crop_resize_like_dust3r(_view(48, 64, [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]), (32, 24),
                                      aug_crop=8, generator=torch.Generator().manual_seed(seed))
        assert out.image_size_hw == (24, 32)
        assert 50 * 32 / 64 - 1e-4 <= float(out.intrinsics[0, 0]) <= 50 * 40 / 64 + 1e-4  # zoomed by 0..7 pixels


def test_off_centre_principal_point_names_the_file():
    with pytest.raises(DataFileError, match=r"^frame.jpg: principal point \(8.0, 23.5\) is too close to the border"):
        crop_resize_like_dust3r(_view(48, 64, [[50, 0, 8], [0, 50, 23.5], [0, 0, 1]]), (32, 24))


@pytest.mark.parametrize("value, expected", [(224, (224, 224)), ([512, 384], (512, 384)), ((512, 384), (512, 384)),
                                             ([[512, 384], [512, 336]], (512, 384))])
def test_parse_resolution(value, expected):
    assert parse_resolution(value, "X.resolution") == expected


@pytest.mark.parametrize("value", [[384, 512], "224", [224, 0], [1, 2, 3], True])
def test_parse_resolution_errors(value):
    with pytest.raises(ConfigError, match=r"^X.resolution="):
        parse_resolution(value, "X.resolution")


class ToySequences(CroppedSequences):
    """Two sequences of 8 frames of 40 x 48 random views; frames listed in `broken` have no depth."""

    broken: Any = ()  # frame numbers without valid depth

    def list_sequences(self) -> List[SequenceEntry]:
        return [SequenceEntry(name, tuple(range(8))) for name in self.scene_ids(["a", "b"])]

    def read_view(self, sequence: SequenceEntry, frame: Any) -> ViewRecord:
        view = _view(40, 48, [[40, 0, 23.5], [0, 40, 19.5], [0, 0, 1]], seed=frame)
        if frame in self.broken:
            view.depth = torch.zeros_like(view.depth)
        view.sequence, view.frame = sequence.name, frame
        return view


def test_cropped_sequences_items():
    toy = ToySequences(ROOT="toy", resolution=(32, 24), num_views=3, min_thresh=1, max_thresh=2, aug_crop=4)
    item = toy[(0, 5, 0)]
    assert len(item) == 3 and item.sequence == "a" and item.dataset == "ToySequences"
    assert all(view.image_size_hw == (24, 32) for view in item.views)
    gaps = [abs(a.frame - b.frame) for a, b in zip(item.views, item.views[1:])]
    assert all(1 <= gap <= 2 for gap in gaps)
    assert toy[(0, 5, 0)].views[1].frame == item.views[1].frame  # the same draw is the same item
    fixed = ToySequences(ROOT="toy", resolution=(32, 24), num_views=3, seed=777)
    frames = {tuple(v.frame for v in fixed[(1, epoch, 9)].views) for epoch in range(6)}
    assert len(frames) == 1  # seed: the same item whatever the epoch and draw


def test_unusable_views_are_redrawn_or_left_out():
    toy = ToySequences(ROOT="toy", num_views=2, min_thresh=1, max_thresh=1, resolution=24, broken=(3, 4, 5))
    for draw in range(10):
        assert not {3, 4, 5} & {view.frame for view in toy[(0, 0, draw)].views}
    video = ToySequences(ROOT="toy", full_video=True, kf_every=2, resolution=24, broken=(4,))
    assert [view.frame for view in video[0].views] == [0, 2, 6]
    hopeless = ToySequences(ROOT="toy", num_views=8, resolution=24, broken=(0,))
    with pytest.raises(DataFileError, match=r"no item of usable views"):
        hopeless[0]


def test_fields_as_the_originals_spell_them(monkeypatch):
    from recon_trainer.config import registry
    from recon_trainer.data.mixing import MixableDataset
    monkeypatch.setitem(registry._implementations.setdefault(MixableDataset, {}), "ToySequences", ToySequences)
    text = "ToySequences(split='val', ROOT='toy', resolution=[(512, 384), (512, 256)], num_frames=4, num_seq=3, " \
           "test_id='c', transform=ColorJitter, aug_crop=16, seed=777)"
    (toy,) = build_leaves(text, data_root="/data")
    assert (toy.ROOT, toy.split, toy.resolution_wh, toy.num_views, toy.items_per_sequence) == (
        "/data/toy", "val", (512, 384), 4, 3)
    assert [s.name for s in toy.sequences] == ["c"] and len(toy) == 3 and math.isclose(toy.ratio, 1.0)
    with pytest.raises(ConfigError, match=r"ToySequences.ROOT is not set"):
        ToySequences()

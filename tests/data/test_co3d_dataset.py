"""CO3D v1 / v2: a tiny dataset written by tools/make_co3d_dataset.py (and the writer) and read back."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from recon_trainer.config import ConfigError, get_default_args
from recon_trainer.data import scene_rendering
from recon_trainer.data.frame_data import collate
from recon_trainer.data.providers.co3d.annotations import Co3dFormatError
from recon_trainer.data.providers.co3d.dataset import JsonIndexDataset
from recon_trainer.data.providers.co3d.providers import (
    CO3D_CATEGORIES,
    JsonIndexDatasetMapProvider,
    JsonIndexDatasetMapProviderV2,
)
from recon_trainer.data.providers.co3d.writer import default_sequences, sequence_mesh, write_co3d_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COW_OBJ = os.path.join(REPO_ROOT, "recon_trainer", "data", "assets", "cow_mesh", "cow.obj")
SCENES = {"procedural": "builtin", "cow": COW_OBJ}
SIZE_HW = (32, 40)
SMALL = {"image_height": 24, "image_width": 24}  # output size of most tests (frames are 32x40)


@pytest.fixture(scope="session")
def v1_root(tmp_path_factory):
    """Two categories x 4 sequences x 8 frames, CO3D v1 files, written by the command-line tool."""
    out = tmp_path_factory.mktemp("co3d") / "v1"
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", "make_co3d_dataset.py"), "--out", str(out),
               "--version", "v1", "--category", "procedural=builtin", "--category", f"cow={COW_OBJ}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "wrote a CO3D v1 dataset" in result.stdout
    return str(out)


@pytest.fixture(scope="session")
def v2_root(tmp_path_factory):
    """The same scenes with CO3D v2 files (isotropic intrinsics), written in-process."""
    out = str(tmp_path_factory.mktemp("co3d") / "v2")
    write_co3d_dataset(out, "v2", default_sequences(SCENES, 4), n_frames=8, image_size_hw=SIZE_HW)
    return out


def _v1(root, **kwargs):
    dataset_args = kwargs.pop("dataset_args", SMALL)
    provider = JsonIndexDatasetMapProvider(
        category=kwargs.pop("category", "procedural"), dataset_root=root,
        dataset_JsonIndexDataset_args=dataset_args, **kwargs
    )
    return provider.get_dataset_map()


def _v2(root, subset_name, **kwargs):
    provider = JsonIndexDatasetMapProviderV2(
        category=kwargs.pop("category", "procedural"), subset_name=subset_name, dataset_root=root,
        dataset_JsonIndexDataset_args=kwargs.pop("dataset_args", SMALL), **kwargs
    )
    return provider.get_dataset_map()


def test_layout_matches_the_released_files(v1_root, v2_root):
    for name in ("frame_annotations.jgz", "sequence_annotations.jgz", "set_lists.json",
                 "eval_batches_singlesequence.json", "eval_batches_multisequence.json"):
        assert os.path.isfile(os.path.join(v1_root, "cow", name)), name
    for name in ("set_lists/set_lists_manyview_dev_0.json", "eval_batches/eval_batches_fewview_dev.json"):
        assert os.path.isfile(os.path.join(v2_root, "procedural", name)), name
    with gzip.open(os.path.join(v1_root, "procedural", "frame_annotations.jgz"), "rt") as f:
        frame = json.load(f)[0]
    assert set(frame) == {"sequence_name", "frame_number", "frame_timestamp", "image", "depth", "mask", "viewpoint",
                          "meta"}
    assert frame["viewpoint"]["intrinsics_format"] == "ndc_norm_image_bounds"
    assert frame["image"]["size"] == list(SIZE_HW)
    with open(os.path.join(v1_root, "procedural", "set_lists.json")) as f:
        assert sorted(json.load(f)) == ["test_known", "test_unseen", "train_known", "train_unseen"]
    assert len(CO3D_CATEGORIES) == 51 and "teddybear" in CO3D_CATEGORIES


@pytest.mark.parametrize("root_name", ["v1_root", "v2_root"])
def test_uncropped_frames_match_the_renders(root_name, request):
    """Depth within float16 precision, exact masks, JPEG colours, cameras that re-render the same depth."""
    uncropped = {"box_crop": False, "image_height": None, "image_width": None}
    if root_name == "v1_root":
        maps = _v1(request.getfixturevalue(root_name), task_str="multisequence", test_on_train=True,
                   dataset_args=uncropped)
    else:
        maps = _v2(request.getfixturevalue(root_name), "fewview_dev", test_on_train=True, dataset_args=uncropped)
    dataset = maps.train
    specs = {s.name: s for s in default_sequences(SCENES, 4)}
    for index in (0, 7):
        frame = dataset[index]
        assert frame.image_rgb.shape == (3, *SIZE_HW) and frame.mask_crop.eq(1).all()
        mesh = sequence_mesh(specs[frame.sequence_name])
        render = scene_rendering.render_mesh(mesh, frame.camera, SIZE_HW)
        assert torch.equal(frame.fg_probability[0], render.mask[0])
        hit = render.mask[0] > 0
        error = (frame.depth_map[0] - render.depth[0]).abs()[hit] / render.depth[0][hit]
        assert error.max() < 2.0**-10  # float16 keeps 11 significant bits
        assert frame.depth_map[0][~hit].eq(0).all() and torch.equal(frame.depth_mask[0], render.mask[0])
        tint = torch.tensor(specs[frame.sequence_name].tint)
        assert (frame.image_rgb.permute(1, 2, 0) - render.rgb[0] * tint).abs().mean() < 0.03


@pytest.mark.parametrize("out_hw", [(None, None), (48, 40)])
def test_cropped_cameras_render_the_cropped_pixels(v1_root, out_hw):
    """The adjusted camera, re-rendered at the output size, sees what the crop (and resize) kept."""
    dataset = _v1(v1_root, task_str="multisequence", test_on_train=True, category="cow",
                  dataset_args={"image_height": out_hw[0], "image_width": out_hw[1]}).train
    specs = {s.name: s for s in default_sequences(SCENES, 4)}
    for index in (0, 5):
        frame = dataset[index]
        size = tuple(frame.image_size_hw.tolist())
        render = scene_rendering.render_mesh(sequence_mesh(specs[frame.sequence_name]), frame.camera, size)
        both = (render.depth[0] > 0) & (frame.depth_map[0] > 0)
        relative = (render.depth[0] - frame.depth_map[0]).abs()[both] / render.depth[0][both]
        if out_hw[0] is None:  # crop only: pixel-exact
            assert size == tuple(frame.meta["crop_bbox_xywh"][:1:-1])
            assert torch.equal(render.mask[0], frame.fg_probability[0]) and relative.max() < 2.0**-10
        else:  # nearest-neighbour resize: equal up to the boundary pixels
            fg = frame.fg_probability[0] > 0.5
            iou = (fg & (render.mask[0] > 0)).sum() / (fg | (render.mask[0] > 0)).sum()
            assert iou > 0.8 and relative.median() < 0.01


def test_box_crop_shapes_and_padding(v1_root):
    frame = _v1(v1_root, test_restrict_sequence_id=0).train[0]
    for name in ("image_rgb", "fg_probability", "depth_map", "depth_mask", "mask_crop"):
        assert getattr(frame, name).shape[-2:] == (24, 24), name
    assert frame.image_rgb.shape[0] == 3 and frame.camera.image_size.tolist() == [[24, 24]]
    x, y, w, h = frame.meta["crop_bbox_xywh"]
    assert frame.mask_crop.sum() == pytest.approx(24 * 24 * min(w, h) / max(w, h), rel=0.1)
    padding = frame.mask_crop[0] == 0
    assert frame.image_rgb[:, padding].abs().max() == 0 and frame.fg_probability[0][padding].max() == 0
    bx, by, bw, bh = frame.meta["bbox_xywh"]
    assert x <= bx and y <= by and x + w >= bx + bw and y + h >= by + bh and w > bw
    native = _v1(v1_root, test_restrict_sequence_id=0, dataset_args={"image_height": None, "image_width": None})
    assert native.train[0].image_rgb.shape[-2:] == (h, w)


def test_v1_singlesequence_splits_and_eval_batches(v1_root):
    maps = _v1(v1_root, test_restrict_sequence_id=0)
    assert set(maps.train.sequence_names()) == {"procedural_002"} == set(maps.test.sequence_names())
    assert set(maps.train.frame_types()) == {"test_known"} and len(maps.train) == 6
    assert sorted(set(maps.val.frame_types())) == ["test_known", "test_unseen"] and len(maps.test) == 8
    assert len(maps.test.eval_batches) == 2
    for batch in maps.test.eval_batches:
        types = [maps.test.frame_types()[i] for i in batch]
        assert types[0] == "test_unseen" and set(types[1:]) == {"test_known"}
    frame = maps.test[maps.test.eval_batches[0][0]]
    assert frame.frame_number.item() % 4 == 1 and frame.sequence_category == "procedural"
    assert frame.frame_timestamp.item() == pytest.approx(frame.frame_number.item() / 30.0)
    other = _v1(v1_root, test_restrict_sequence_id=1, category="cow")
    assert set(other.test.sequence_names()) == {"cow_003"}
    with pytest.raises(ConfigError, match="test_restrict_sequence_id"):
        _v1(v1_root)
    with pytest.raises(ConfigError, match="only 2 evaluation sequences"):
        _v1(v1_root, test_restrict_sequence_id=2)


def test_v1_multisequence_splits(v1_root):
    maps = _v1(v1_root, task_str="multisequence")
    assert set(maps.train.sequence_names()) == {"procedural_000", "procedural_001"}
    assert set(maps.train.frame_types()) == {"train_known"}
    assert len(maps.test) == 32 and maps.val.eval_batches is None
    targets = {maps.test.frame_types()[b[0]] for b in maps.test.eval_batches}
    assert targets == {"train_unseen", "test_unseen"}
    n_src = sorted({len(b) - 1 for b in maps.test.eval_batches})
    assert n_src == [1, 3, 5, 6]
    names = maps.test.sequence_names()
    assert all(len({names[i] for i in b}) == 1 for b in maps.test.eval_batches)
    batch = collate([maps.test[i] for i in maps.test.eval_batches[2]])
    assert batch.image_rgb.shape == (6, 3, 24, 24) and len(batch.camera) == 6
    same = _v1(v1_root, task_str="multisequence", test_on_train=True)
    assert same.val is same.train is same.test
    only = _v1(v1_root, task_str="multisequence", only_test_set=True)
    assert only.train is None and only.test is not None
    with pytest.raises(ValueError, match="assert_single_seq"):
        _v1(v1_root, task_str="multisequence", assert_single_seq=True)
    restricted = _v1(v1_root, task_str="multisequence", restrict_sequence_name=("procedural_000",))
    assert set(restricted.test.sequence_names()) == {"procedural_000"}
    assert all(restricted.test.sequence_names()[b[0]] == "procedural_000" for b in restricted.test.eval_batches)


def test_v2_subsets_known_frames_and_categories(v2_root):
    many = _v2(v2_root, "manyview_dev_0")
    assert len(many.train) == 6 and len(many.test) == 2 and many.test.eval_batches == [[0], [1]]
    assert many.train[0].camera.image_size.tolist() == [[24, 24]]
    extended = _v2(v2_root, "manyview_dev_0", n_known_frames_for_test=3)
    sources = {i for batch in extended.test.eval_batches for i in batch[1:]}
    assert len(extended.test) == 2 + len(sources) and 3 <= len(sources) <= 6
    for batch in extended.test.eval_batches:
        assert len(batch) == 4 and extended.test.frame_types()[batch[0]] == "test_unseen"
        assert {extended.test.frame_types()[i] for i in batch[1:]} == {"train_known"}
    few = _v2(v2_root, "fewview_dev")
    assert set(few.train.sequence_names()) == {"procedural_000", "procedural_001"}
    assert set(few.test.sequence_names()) == {"procedural_002", "procedural_003"}
    both = _v2(v2_root, "fewview_dev", category="procedural,cow")
    assert len(both.train) == 32 and len(both.test) == 32
    assert {both.test.sequence_names()[b[0]].split("_")[0] for b in both.test.eval_batches} == {"procedural", "cow"}
    assert all(max(b) < len(both.test) for b in both.test.eval_batches)
    with pytest.raises(ConfigError, match="available"):
        _v2(v2_root, "manyview_test_9")


def test_dataset_filters(v1_root):
    frames = os.path.join(v1_root, "procedural", "frame_annotations.jgz")
    sequences = os.path.join(v1_root, "procedural", "sequence_annotations.jgz")

    def make(**kwargs):
        return JsonIndexDataset(frame_annotations_file=frames, sequence_annotations_file=sequences,
                                dataset_root=v1_root, **kwargs)

    assert len(make()) == 32 and set(make().frame_types()) == {""}
    assert len(make(limit_to=5)) == 5
    assert set(make(limit_sequences_to=2).sequence_names()) == {"procedural_000", "procedural_001"}
    assert set(make(pick_sequence=("procedural_003",)).sequence_names()) == {"procedural_003"}
    assert "procedural_003" not in make(exclude_sequence=("procedural_003",)).sequence_names()
    assert len(make(limit_category_to=("cow",)).sequence_names()) == 0
    sampled = make(n_frames_per_sequence=3)
    assert len(sampled) == 12 and sampled.sequence_names() == make(n_frames_per_sequence=3).sequence_names()
    numbers = [sampled.frame_annotation(i).frame_number for i in range(len(sampled))]
    assert numbers != [make(n_frames_per_sequence=3, seed=1).frame_annotation(i).frame_number for i in range(12)]
    typed = make(subset_lists_file=os.path.join(v1_root, "procedural", "set_lists.json"), subsets=["train_unseen"])
    assert len(typed) == 4 and set(typed.frame_types()) == {"train_unseen"}
    assert make(load_point_clouds=True, max_points=100)[0].meta["sequence_point_cloud"].shape == (100, 3)
    masked = make(mask_images=True, mask_depths=True, image_height=24, image_width=24)[0]
    assert masked.image_rgb[:, masked.fg_probability[0] == 0].abs().max() == 0


def test_config_hides_the_fields_the_provider_sets():
    args = get_default_args(JsonIndexDatasetMapProvider).dataset_JsonIndexDataset_args
    for hidden in ("dataset_root", "subsets", "pick_sequence", "eval_batches", "frame_annotations_file"):
        assert hidden not in args
    assert args.image_height == 800 and args.box_crop_context == 0.3 and args.load_point_clouds is False
    v2_args = get_default_args(JsonIndexDatasetMapProviderV2).dataset_JsonIndexDataset_args
    assert "n_frames_per_sequence" in v2_args and "dataset_root" not in v2_args
    assert JsonIndexDatasetMapProvider(category="apple").data_path() is None


@pytest.fixture()
def broken_root(v1_root, tmp_path):
    """A copy of the procedural category whose files the tests corrupt."""
    root = tmp_path / "broken"
    shutil.copytree(os.path.join(v1_root, "procedural"), root / "procedural")
    return str(root)


def _rewrite_frames(root, edit):
    path = os.path.join(root, "procedural", "frame_annotations.jgz")
    with gzip.open(path, "rt") as f:
        records = json.load(f)
    edit(records)
    with gzip.open(path, "wt") as f:
        json.dump(records, f)
    return path


@pytest.mark.parametrize("edit,field", [
    (lambda r: r[5]["viewpoint"].pop("T"), "viewpoint.T"),
    (lambda r: r[5]["viewpoint"].__setitem__("focal_length", [-1.0, 2.0]), "viewpoint.focal_length"),
    (lambda r: r[5]["image"].__setitem__("size", [32]), "image.size"),
    (lambda r: r[5]["viewpoint"].__setitem__("intrinsics_format", "pixels"), "viewpoint.intrinsics_format"),
    (lambda r: r[5].__setitem__("frame_timestamp", "soon"), "frame_timestamp"),
])
def test_malformed_frame_annotations_name_file_entry_and_field(broken_root, edit, field):
    path = _rewrite_frames(broken_root, edit)
    with pytest.raises(Co3dFormatError) as error:
        _v1(broken_root, test_restrict_sequence_id=0)
    message = str(error.value)
    assert path in message and "entry 5 (sequence 'procedural_000', frame 5)" in message and f"'{field}'" in message


def test_malformed_lists_and_missing_files(broken_root):
    folder = os.path.join(broken_root, "procedural")
    with open(os.path.join(folder, "eval_batches_singlesequence.json"), "w") as f:
        json.dump([[["procedural_002", "one", "x.jpg"]]], f)
    with pytest.raises(Co3dFormatError, match=r"eval_batches_singlesequence.json: batch 0 entry 0"):
        _v1(broken_root, test_restrict_sequence_id=0)
    os.remove(os.path.join(folder, "sequence_annotations.jgz"))
    with pytest.raises(Co3dFormatError, match="sequence_annotations.jgz not found"):
        _v1(broken_root, task_str="multisequence", only_test_set=True)
    with open(os.path.join(folder, "set_lists.json"), "w") as f:
        json.dump({"train_known": []}, f)
    with pytest.raises(Co3dFormatError, match=r"set_lists.json: set list\(s\) \['train_unseen'"):
        _v1(broken_root, task_str="multisequence")


def test_images_load_lazily(broken_root):
    maps = _v1(broken_root, test_restrict_sequence_id=0)
    frame = maps.train.frame_annotation(1)
    os.remove(os.path.join(broken_root, frame.image.path))
    assert maps.train[0].image_rgb is not None
    with pytest.raises(Co3dFormatError, match=os.path.basename(frame.image.path) + " not found"):
        maps.train[1]

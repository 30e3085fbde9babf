"""The data check before training: bad files of every split are found before any loader is built,
reported all at once (one DataFileError naming each file) or skipped with skip_unreadable; readers
name the file when a decode fails at load time."""
import glob
import json
import logging
import math
import os

import h5py
import numpy as np
import pytest
from PIL import Image

from recon_trainer.data import file_check
from recon_trainer.data.data_source import ReconDataSource
from recon_trainer.data.depth.redweb import ReDWeb
from recon_trainer.data.depth.synthetic import DepthViews, write_redweb
from recon_trainer.data.file_check import DataFile, FileItems, check_file, check_files, check_split_files
from recon_trainer.data.formats.sintel_dpt import write_dpt
from recon_trainer.data.mixing.data_source import MixtureDataSource
from recon_trainer.data.providers.blender import BlenderDatasetMapProvider, BlenderFormatError
from recon_trainer.data.providers.co3d.writer import default_sequences, write_co3d_dataset
from recon_trainer.errors import DataFileError
from tests.reliability.helpers import RUNNER, assert_reported, run

REDWEB = "ReDWeb(root='ReDWeb_V1', val_every=4, split='{split}'{extra})"
TRAIN = REDWEB.format(split="train", extra=", training_crop=8")
TEST = REDWEB.format(split="val", extra="")


def write_tiny_redweb(root, n_images=8, size=16, seed=0):
    """A ReDWeb_V1 folder of n_images random size x size images: with val_every=4, images 0 and 4
    are the val (test) split, the others train."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 5.0, (n_images, size, size)).astype(np.float32)
    return write_redweb(str(root), DepthViews(rgb=rgb, depth=depth, cameras=None))


def cut_end(path, n_bytes=40):
    """Drop the last n_bytes of a file (a copy interrupted near its end)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-n_bytes])


def garble_header(path):
    with open(path, "r+b") as f:
        f.write(b"garbage!")


@pytest.fixture()
def bad_redweb(tmp_path):
    """A tiny ReDWeb with a truncated JPEG in the test split and a corrupt PNG in the train split."""
    root = write_tiny_redweb(tmp_path / "data" / "ReDWeb_V1")
    bad_jpeg, bad_png = os.path.join(root, "Imgs", "00004.jpg"), os.path.join(root, "RDs", "00002.png")
    cut_end(bad_jpeg)
    garble_header(bad_png)
    return str(tmp_path / "data"), bad_jpeg, bad_png


# ---------------------------------------------------------------------------------------------
# One file, many files


def test_check_file_by_format(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    paths = {}

    def path(name):
        paths[name] = str(tmp_path / name)
        return paths[name]

    Image.fromarray(pixels).save(path("ok.jpg"), quality=95)
    Image.fromarray(pixels).save(path("cut.jpg"), quality=95)
    cut_end(paths["cut.jpg"])
    Image.fromarray(pixels).save(path("ok.png"))
    Image.fromarray(pixels).save(path("cut.png"))
    cut_end(paths["cut.png"], 8)
    Image.fromarray(pixels).save(path("ok.thumb"), format="JPEG")
    Image.fromarray(pixels).save(path("ok.bmp"))
    write_dpt(path("ok.dpt"), np.ones((3, 4), np.float32))
    write_dpt(path("cut.dpt"), np.ones((3, 4), np.float32))
    cut_end(paths["cut.dpt"], 4)
    np.save(path("ok.npy"), np.zeros((4, 5), np.float32))
    np.save(path("cut.npy"), np.zeros((4, 5), np.float32))
    cut_end(paths["cut.npy"], 4)
    np.savez(path("ok.npz"), a=np.zeros(3), b=np.ones((2, 2)))
    np.savez(path("cut.npz"), a=np.zeros(3))
    cut_end(paths["cut.npz"], 10)
    with h5py.File(path("ok.h5"), "w") as f:
        f.create_dataset("x", data=np.zeros((64, 64)))
    with h5py.File(path("cut.h5"), "w") as f:
        f.create_dataset("x", data=np.zeros((64, 64)))
    cut_end(paths["cut.h5"], 1000)
    (tmp_path / "ok.txt").write_text("x")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "folder.png").mkdir()

    reasons = {name: check_file(DataFile(str(tmp_path / name))) for name in sorted(os.listdir(tmp_path))}
    reasons["missing.png"] = check_file(DataFile(str(tmp_path / "missing.png")))
    reasons["ok.thumb as image"] = check_file(DataFile(paths["ok.thumb"], "image"))
    reasons["ok.npy as image"] = check_file(DataFile(paths["ok.npy"], "image"))
    assert {name: reason for name, reason in reasons.items() if reason is None} == {
        name: None for name in ("ok.jpg", "ok.png", "ok.thumb", "ok.bmp", "ok.dpt", "ok.npy", "ok.npz", "ok.h5",
                                "ok.txt", "ok.thumb as image")
    }
    assert reasons["cut.jpg"].startswith("truncated JPEG: no end-of-image marker FF D9")
    assert reasons["cut.png"].startswith("truncated PNG: no IEND chunk")
    assert reasons["cut.dpt"] == "56 bytes for a 4x3 .dpt, expected 60"
    assert reasons["cut.npy"] == "204 bytes, expected 208 for float32 (4, 5)"
    assert reasons["cut.npz"].startswith("not a .npz (zip) archive")
    assert reasons["cut.h5"].startswith("not an HDF5 file h5py can open")
    assert reasons["empty.txt"] == "empty file"
    assert reasons["folder.png"] == "not a regular file"
    assert reasons["missing.png"] == "missing"
    assert reasons["ok.npy as image"] == "not an image PIL can identify"


def test_check_files_checks_each_path_once_in_a_stable_order(tmp_path, monkeypatch):
    seen = []

    def fake_check(file):
        seen.append(file.path)
        return None if file.path.startswith("good") else f"bad {file.path}"

    monkeypatch.setattr(file_check, "check_file", fake_check)
    files = [DataFile(name) for name in ("bad3", "good1", "bad1", "bad3", "good1", "bad2", "bad1")]
    assert list(check_files(files, workers=3).items()) == [("bad3", "bad bad3"), ("bad1", "bad bad1"),
                                                           ("bad2", "bad bad2")]
    assert sorted(seen) == ["bad1", "bad2", "bad3", "good1"]


def test_split_report_lists_every_bad_file_then_skips_them(tmp_path, caplog):
    good = tmp_path / "good.bin"
    good.write_bytes(b"x")
    missing = [str(tmp_path / f"missing_{i:02d}.bin") for i in range(60)]
    train = FileItems(list(range(62)), [(DataFile(str(good)),)] * 2 + [(DataFile(path),) for path in missing])
    held_out = FileItems(["kept", "dropped"], [(DataFile(str(good)),), (DataFile(missing[0]), DataFile(str(good)))])
    splits = {"train": [train], "val": [held_out], "test": [held_out]}  # one dataset as val and test, as LLFF
    with pytest.raises(DataFileError) as raised:
        check_split_files(splits, False, "data_source_X_args")
    lines = str(raised.value).splitlines()
    assert lines[0] == ("60 data files failed the check before training (60 of the train split, 1 of the val split, "
                        "1 of the test split):")
    assert lines[1:51] == [f"  {path}: missing" for path in missing[:50]]
    assert lines[51:] == ["  ... and 10 more",
                          "set data_source_X_args.skip_unreadable=true to skip the items that read them"]
    assert len(train) == 62 and len(held_out) == 2  # nothing dropped without skip_unreadable

    with caplog.at_level(logging.WARNING, logger="recon_trainer.data.file_check"):
        skipped = check_split_files(splits, True, "data_source_X_args")
    assert skipped == {"train": 60, "val": 1, "test": 1}
    assert train.items == [0, 1] and held_out.items == ["kept"]
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert record.getMessage().startswith("skipped 60 items of the train split, 1 item of the val split, 1 item of "
                                          "the test split (data_source_X_args.skip_unreadable=true)")
    assert missing[0] in record.getMessage() and "... and 10 more" in record.getMessage()


def test_skipping_every_item_of_a_dataset_is_an_error(tmp_path):
    items = FileItems(["a"], [(DataFile(str(tmp_path / "missing.png")),)])
    with pytest.raises(DataFileError, match=r"every one of its 1 items reads a file that failed the check"):
        check_split_files({"test": [items]}, True, "key")
    assert len(items) == 1


# ---------------------------------------------------------------------------------------------
# Depth datasets in a mixture (ReDWeb)


def test_mixture_reports_bad_files_of_every_split_before_loading(bad_redweb):
    data_root, bad_jpeg, bad_png = bad_redweb
    source = MixtureDataSource(data_root=data_root, train=TRAIN, test=TEST)
    with pytest.raises(DataFileError) as raised:
        source.get_datasets_and_dataloaders()
    lines = str(raised.value).splitlines()
    assert lines[0] == "2 data files failed the check before training (1 of the train split, 1 of the test split):"
    assert lines[1] == f"  {bad_png}: not an image PIL can identify"
    assert lines[2].startswith(f"  {bad_jpeg}: truncated JPEG: no end-of-image marker FF D9")
    assert lines[3:] == ["set data_source_MixtureDataSource_args.skip_unreadable=true to skip the items that read them"]


def test_mixture_skips_exactly_the_bad_items(bad_redweb, caplog):
    data_root, bad_jpeg, bad_png = bad_redweb
    source = MixtureDataSource(data_root=data_root, train=TRAIN, test=TEST, skip_unreadable=True, batch_size=2,
                               batches_per_epoch=6)
    with caplog.at_level(logging.WARNING, logger="recon_trainer.data.file_check"):
        datasets, loaders = source.get_datasets_and_dataloaders()
    (record,) = caplog.records
    assert record.getMessage().startswith("skipped 1 item of the train split, 1 item of the test split")
    assert bad_jpeg in record.getMessage() and bad_png in record.getMessage()
    assert datasets.train.component_sizes == [5] and len(datasets.test) == 1  # of 6 and 2
    assert [batch.image_path for batch in loaders.test] == [[os.path.join(data_root, "ReDWeb_V1", "Imgs", "00000.jpg")]]
    assert sum(len(batch.image_rgb) for batch in loaders.train) == 12  # every train item loads


def test_truncated_jpeg_read_at_load_time_names_the_file(bad_redweb):
    data_root, bad_jpeg, _ = bad_redweb
    source = MixtureDataSource(data_root=data_root, test=TEST, check_files=False)
    _, loaders = source.get_datasets_and_dataloaders()
    with pytest.raises(DataFileError, match=f"{bad_jpeg}.*cannot be decoded.*truncated"):
        list(loaders.test)
    dataset = ReDWeb(root=os.path.join(data_root, "ReDWeb_V1"), split="all")
    with pytest.raises(DataFileError, match=r"00002\.png': not an image file PIL can read"):
        dataset[2]


# ---------------------------------------------------------------------------------------------
# NVS providers through ReconDataSource: Blender (loads every frame at construction), CO3D (lazy)


def write_tiny_blender(base, n_frames):
    """A Blender-layout folder of 8x8 RGBA PNGs: {split: n} frames per split, each with its own image."""
    c2w = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 4.0], [0.0, 0.0, 0.0, 1.0]]
    rng = np.random.default_rng(0)
    for split, n in n_frames.items():
        os.makedirs(base / split, exist_ok=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)).save(base / split / f"r_{k}.png")
        frames = [{"file_path": f"./{split}/r_{k}", "transform_matrix": c2w} for k in range(n)]
        (base / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": math.pi / 3, "frames": frames}))


def test_blender_bad_image_found_before_loading_and_skipped(tmp_path, caplog):
    base = tmp_path / "scene"
    write_tiny_blender(base, {"train": 3, "val": 1, "test": 2})
    bad = str(base / "test" / "r_0.png")
    cut_end(bad, 60)
    args = {"base_dir": str(base), "n_known_frames_for_test": 1}
    with pytest.raises(BlenderFormatError, match=f"cannot read image {bad}"):  # loading alone names it too
        BlenderDatasetMapProvider(**args).get_dataset_map()

    source = ReconDataSource(dataset_map_provider_BlenderDatasetMapProvider_args=args)
    with pytest.raises(DataFileError, match=r"^1 data file failed the check before training \(1 of the test split\):\n"
                                            rf"  {bad}: truncated PNG.*\nset data_source_ReconDataSource_args\."):
        source.get_datasets_and_dataloaders()

    source = ReconDataSource(dataset_map_provider_BlenderDatasetMapProvider_args=args, skip_unreadable=True)
    with caplog.at_level(logging.WARNING, logger="recon_trainer.data.file_check"):
        datasets, loaders = source.get_datasets_and_dataloaders()
    assert "skipped 1 item of the test split" in caplog.text
    assert [len(d) for d in (datasets.train, datasets.val)] == [3, 1]
    test = datasets.test  # the remaining test frame, then the 3 train frames as known source views
    assert [frame.image_path for frame in test.frames[:1]] == [str(base / "test" / "r_1.png")]
    assert [frame.frame_number for frame in test.frames] == [5, 0, 1, 2]  # numbers of the files, kept
    assert len(test.eval_batches) == 1 and all(0 <= i < len(test) for i in test.eval_batches[0])
    assert len(list(loaders.test)) == len(test)  # every kept frame loads


def test_co3d_skipped_frames_leave_consistent_eval_batches(tmp_path):
    root = str(tmp_path / "co3d")
    write_co3d_dataset(root, "v1", default_sequences({"procedural": "builtin"}, 2), n_frames=4, image_size_hw=(16, 16))
    args = {
        "dataset_map_provider_class_type": "JsonIndexDatasetMapProvider",
        "dataset_map_provider_JsonIndexDatasetMapProvider_args": {
            "category": "procedural", "dataset_root": root, "test_restrict_sequence_id": 0,
            "dataset_JsonIndexDataset_args": {"image_height": 16, "image_width": 16},
        },
        "data_loader_map_provider_class_type": "SequenceDataLoaderMapProvider",
    }
    before, _ = ReconDataSource(**args, check_files=False).get_datasets_and_dataloaders()
    (batch,) = before.test.eval_batches
    target, source, *others = [before.test.frame_annotation(i) for i in batch]
    bad = os.path.join(root, source.mask.path)  # a known source view's mask (read for the box crop)
    garble_header(bad)

    with pytest.raises(DataFileError, match=r"^1 data file failed the check before training \(1 of the train split, "
                                            rf"1 of the val split, 1 of the test split\):\n  {bad}: not an image PIL "
                                            r"can identify\nset data_source_ReconDataSource_args\.skip_unreadable"):
        ReconDataSource(**args).get_datasets_and_dataloaders()
    datasets, loaders = ReconDataSource(**args, skip_unreadable=True).get_datasets_and_dataloaders()
    assert [len(d) for d in (datasets.train, datasets.val, datasets.test)] == [2, 3, 3]
    kept = [[datasets.test.frame_annotation(i).frame_number for i in b] for b in datasets.test.eval_batches]
    assert kept == [[target.frame_number] + [f.frame_number for f in others]]  # the source left its batch
    (loaded,) = list(loaders.test)
    assert loaded.frame_number.tolist() == kept[0]


# ---------------------------------------------------------------------------------------------
# End to end: recon_runner stops before training


def test_runner_stops_before_training_on_a_corrupt_test_file(tmp_path):
    root = write_tiny_redweb(tmp_path / "data" / "ReDWeb_V1", n_images=12, size=32)
    bad = os.path.join(root, "Imgs", "00008.jpg")  # val_every=4: a test-split image
    cut_end(bad)
    ds = "data_source_MixtureDataSource_args"
    result = run(
        [*RUNNER, "--config-name", "midas_redweb", "+preset=midas_quick", "exp_dir=run",
         f'{ds}.train="{REDWEB.format(split="train", extra=", training_crop=32")}"', f"{ds}.val=''",
         f'{ds}.test="{TEST}"', "training_loop_ReconTrainingLoop_args.max_epochs=1"],
        cwd=tmp_path, env_extra={"MIDAS_DATA_ROOT": str(tmp_path / "data")}, timeout=120,
    )
    assert result.returncode != 0 and bad in result.stderr, result.stderr[-3000:]
    assert not glob.glob(str(tmp_path / "run" / "checkpoint*"))  # stopped before the first training step
    line = assert_reported(result)
    assert line == "recon_runner: error: 1 data file failed the check before training (1 of the test split):"
    assert "data_source_MixtureDataSource_args.skip_unreadable=true" in result.stderr

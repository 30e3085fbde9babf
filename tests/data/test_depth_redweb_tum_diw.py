"""ReDWeb, TUM RGB-D and DIW readers read back what the synthetic writers stored in each layout."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from recon_trainer.config import ConfigError
from recon_trainer.data.depth.diw import DIW
from recon_trainer.data.depth.redweb import ReDWeb
from recon_trainer.data.depth.synthetic import (
    TUM_SEQUENCE,
    redweb_rd,
    render_depth_views,
    tum_depth_png,
    write_diw,
    write_redweb,
    write_tum,
)
from recon_trainer.data.depth.tum import TUM, associate
from recon_trainer.data.frame_data import collate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 6
SIZE = (40, 56)


@pytest.fixture(scope="module")
def views():
    return render_depth_views(N, SIZE, seed=11, depth_range=(0.5, 8.0))


@pytest.fixture(scope="module")
def written(views, tmp_path_factory):
    """{"redweb", "tum", "diw", "diw3"}: folders written once; tests that change files copy them."""
    out = tmp_path_factory.mktemp("depth")
    return {
        "redweb": write_redweb(str(out / "ReDWeb_V1"), views),
        "tum": write_tum(str(out / "tum" / TUM_SEQUENCE), views, fps=30.0, seed=2),
        "diw": write_diw(str(out / "DIW"), views, seed=3),
        "diw3": write_diw(str(out / "DIW3"), views, pairs_per_image=3, seed=4),
    }


def _copy(written, name, tmp_path):
    return shutil.copytree(written[name], tmp_path / name)


# ------------------------------------------------------------------------------------------- ReDWeb


def test_redweb_disparity_is_the_written_rd_map(views, written):
    dataset = ReDWeb(root=written["redweb"])
    assert len(dataset) == N and dataset.eval_metric == "absrel"
    for i in range(N):
        frame = dataset[i]
        rd = redweb_rd(views.depth[i])
        assert rd.min() == 1 and rd.max() == 255
        np.testing.assert_array_equal(frame.disparity_map[0].numpy(), rd.astype(np.float32))
        assert frame.depth_map is None and bool((frame.depth_mask == 1).all())
        # larger RD = closer: RD order is the inverse of the depth order
        assert rd[np.unravel_index(views.depth[i].argmin(), SIZE)] == 255
        # JPEG (quality 95) of the rendered image
        assert np.abs(frame.image_rgb.permute(1, 2, 0).numpy() * 255 - views.rgb[i]).mean() < 4.0
        assert frame.meta == {"dataset": "ReDWeb", "eval_metric": "absrel", "depth_cap": 0.0}


def test_redweb_splits(written):
    names = lambda ds: [os.path.basename(r[0]) for r in ds._records]  # noqa: E731
    assert names(ReDWeb(root=written["redweb"], split="val", val_every=4)) == ["00000.jpg", "00004.jpg"]
    assert names(ReDWeb(root=written["redweb"], split="train", val_every=4)) == [
        "00001.jpg", "00002.jpg", "00003.jpg", "00005.jpg"
    ]
    with pytest.raises(ConfigError, match=r"bad value 'test' for 'ReDWeb.split'; choices: all, train, val"):
        ReDWeb(root=written["redweb"], split="test")


def test_redweb_missing_rd_and_bad_rd_bit_depth(written, tmp_path):
    root = _copy(written, "redweb", tmp_path)
    os.remove(root / "RDs" / "00002.png")
    with pytest.raises(ConfigError, match=r"RDs/00002\.png.*not found for image '00002\.jpg'"):
        ReDWeb(root=str(root))
    Image.fromarray(np.full(SIZE, 300, dtype=np.uint16)).save(root / "RDs" / "00002.png")
    dataset = ReDWeb(root=str(root))
    with pytest.raises(ValueError, match=r"00002\.png.*expected an 8-bit PNG"):
        dataset[2]
    with pytest.raises(ConfigError, match="Imgs"):
        ReDWeb(root=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------- TUM


def test_tum_depth_is_exact_to_the_png_unit(views, written):
    dataset = TUM(root=written["tum"])
    assert len(dataset) == N  # the extra depth frame matches no image
    for i in range(N):
        frame = dataset[i]
        depth, valid = frame.depth_map[0].numpy(), frame.depth_mask[0].numpy() > 0
        assert valid.all()  # every rendered depth is below 8 m < 10 m cap < 13.1 m PNG range
        np.testing.assert_allclose(depth, tum_depth_png(views.depth[i]) / np.float32(5000.0), rtol=0, atol=0)
        assert np.abs(depth - views.depth[i]).max() <= 0.5 / 5000.0 + 1e-6
        np.testing.assert_allclose(frame.disparity_map[0].numpy(), 1.0 / depth, rtol=1e-6)
        np.testing.assert_array_equal(np.round(frame.image_rgb.permute(1, 2, 0).numpy() * 255), views.rgb[i])
        assert frame.meta["eval_metric"] == "delta1.25" and frame.meta["depth_cap"] == 10.0
        assert frame.sequence_name == TUM_SEQUENCE


def test_tum_association_pairs_frame_i_with_depth_i(written):
    def listed(name):
        with open(os.path.join(written["tum"], name)) as f:
            return [line.split()[1] for line in f if not line.startswith("#")]

    rgb, depth = listed("rgb.txt"), listed("depth.txt")
    assert len(depth) == N + 1
    records = TUM(root=written["tum"])._records
    assert [os.path.relpath(r, written["tum"]) for r, _ in records] == rgb
    assert [os.path.relpath(d, written["tum"]) for _, d in records] == depth[:N]
    # jitter is up to 0.01 s: a tight threshold drops frames
    assert len(TUM(root=written["tum"], max_time_difference=0.004)) < N


def test_associate_is_greedy_by_time_difference_and_unique():
    # rgb 1 is closest to depth 0 (4 ms), so rgb 0 (6 ms from depth 0) stays unmatched;
    # rgb 2 takes depth 1 (9 ms), rgb 3 nothing (depth 1 used, depth 2 is 25 ms away).
    assert associate([0.0, 0.010, 0.030, 0.040], [0.006, 0.039, 0.065], 0.02) == [(1, 0), (3, 1)]
    assert associate([0.0, 1.0], [0.5], 0.02) == []


def test_tum_malformed_line_and_depth_png(written, tmp_path):
    root = _copy(written, "tum", tmp_path)
    with open(root / "depth.txt", "a") as f:
        f.write("1311870430.5\n")
    with pytest.raises(ValueError, match=r"depth\.txt:11: '1311870430\.5', expected 'timestamp path'"):
        TUM(root=str(root))
    shutil.copy(os.path.join(written["tum"], "depth.txt"), root / "depth.txt")
    first_depth = TUM(root=str(root))._records[0][1]
    Image.fromarray(np.full(SIZE, 7, dtype=np.uint8)).save(first_depth)
    with pytest.raises(ValueError, match="expected a single-channel 16-bit PNG"):
        TUM(root=str(root))[0]
    os.remove(root / "rgb.txt")
    with pytest.raises(ConfigError, match=r"rgb\.txt.*not found"):
        TUM(root=str(root))


# ------------------------------------------------------------------------------------------- DIW


def test_diw_pairs_round_trip_and_agree_with_depth(views, written):
    with open(os.path.join(written["diw"], "DIW_Annotations", "DIW_test.csv")) as f:
        lines = f.read().split()
    assert len(lines) == 2 * N and lines[0] == "./DIW_test/00000.thumb"
    dataset = DIW(root=written["diw"])
    assert len(dataset) == N
    for i in range(N):
        frame = dataset[i]
        pairs = frame.meta["ordinal_pairs"]
        y_a, x_a, y_b, x_b, rel, w, h = lines[2 * i + 1].split(",")
        expected = [int(y_a) - 1, int(x_a) - 1, int(y_b) - 1, int(x_b) - 1, -1 if rel == "<" else 1]
        assert pairs.tolist() == [expected] and (int(w), int(h)) == (SIZE[1], SIZE[0])
        depth_a, depth_b = views.depth[i][expected[0], expected[1]], views.depth[i][expected[2], expected[3]]
        assert max(depth_a / depth_b, depth_b / depth_a) >= 1.25
        assert (depth_a < depth_b) == (expected[4] == -1)
        assert frame.depth_map is None and frame.disparity_map is None
        assert frame.meta["eval_metric"] == "whdr" and tuple(frame.image_rgb.shape) == (3, *SIZE)


def test_diw_groups_pairs_of_one_image(views, written):
    dataset = DIW(root=written["diw3"])
    assert len(dataset) == N
    for i in range(N):
        pairs = dataset[i].meta["ordinal_pairs"].numpy()
        assert pairs.shape == (3, 5)
        depth = views.depth[i]
        closer = depth[pairs[:, 0], pairs[:, 1]] < depth[pairs[:, 2], pairs[:, 3]]
        np.testing.assert_array_equal(np.where(closer, -1, 1), pairs[:, 4])


def test_diw_malformed_line_and_missing_files(written, tmp_path):
    root = _copy(written, "diw", tmp_path)
    csv = root / "DIW_Annotations" / "DIW_test.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:3] + ["12,7,30,5,=,56,40"] + lines[4:]) + "\n")
    with pytest.raises(ValueError, match=r"DIW_test\.csv:4: '12,7,30,5,=,56,40', expected 'y_A,x_A,y_B,x_B,<or>,W,H'"):
        DIW(root=str(root))
    csv.write_text("\n".join(lines[:3] + ["12,70,30,5,<,56,40"] + lines[4:]) + "\n")  # x_A = 70 > W
    with pytest.raises(ValueError, match=r"DIW_test\.csv:4"):
        DIW(root=str(root))
    csv.write_text("\n".join(lines) + "\n")
    os.remove(root / "DIW_test" / "00001.thumb")
    with pytest.raises(ConfigError, match=r"00001\.thumb.*not found"):
        DIW(root=str(root))
    with pytest.raises(ConfigError, match=r"DIW_train_val\.csv.*not found"):
        DIW(root=str(root), split="train")


def test_diw_coordinates_scale_to_the_image_size(written, tmp_path):
    """Coordinates given for a 2x larger W x H map back to the same pixels of the stored image."""
    root = _copy(written, "diw", tmp_path)
    csv = root / "DIW_Annotations" / "DIW_test.csv"
    lines = csv.read_text().splitlines()
    y_a, x_a, y_b, x_b, rel, w, h = lines[1].split(",")
    doubled = [2 * (int(v) - 1) + 1 for v in (y_a, x_a, y_b, x_b)]
    lines[1] = ",".join([*map(str, doubled), rel, str(2 * int(w)), str(2 * int(h))])
    csv.write_text("\n".join(lines) + "\n")
    assert DIW(root=str(root))[0].meta["ordinal_pairs"].tolist() == DIW(root=written["diw"])[0].meta[
        "ordinal_pairs"
    ].tolist()


# ------------------------------------------------------------------------------------------- training


def test_training_items_of_all_kinds_batch_together(written):
    torch.manual_seed(0)
    redweb = ReDWeb(root=written["redweb"], training_crop=32)
    tum = TUM(root=written["tum"], training_crop=32, name="tum_desk")
    batch = collate([redweb[0], tum[1], redweb[3]])
    assert tuple(batch.image_rgb.shape) == (3, 3, 32, 32)
    assert tuple(batch.disparity_map.shape) == (3, 1, 32, 32) and tuple(batch.depth_mask.shape) == (3, 1, 32, 32)
    assert batch.depth_map is None
    assert [m["dataset"] for m in batch.meta["frames"]] == ["ReDWeb", "tum_desk", "ReDWeb"]
    # ReDWeb targets are RD values (1..255), TUM targets 1 / depth with depth in 0.5..8 m
    assert 1.0 <= float(batch.disparity_map[0].min()) and float(batch.disparity_map[0].max()) <= 255.0
    assert 1 / 8.0 - 1e-3 <= float(batch.disparity_map[1].min()) and float(batch.disparity_map[1].max()) <= 2.5
    with pytest.raises(ConfigError, match="no dense ground truth"):
        DIW(root=written["diw"], training_crop=32)[0]


def test_tool_writes_readable_datasets(tmp_path):
    out = tmp_path / "data"
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", "make_depth_datasets.py"), "--out", str(out)]
    command += ["--datasets", "redweb", "tum", "diw", "--n-images", "3", "--height", "24", "--width", "32"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr
    paths = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert paths == {
        "redweb": str(out / "ReDWeb_V1"),
        "tum": str(out / "tum" / TUM_SEQUENCE),
        "diw": str(out / "DIW"),
    }
    for cls, name in ((ReDWeb, "redweb"), (TUM, "tum"), (DIW, "diw")):
        dataset = cls(root=paths[name])
        assert len(dataset) == 3 and tuple(dataset[0].image_rgb.shape) == (3, 24, 32)

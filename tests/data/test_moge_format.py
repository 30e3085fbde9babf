"""MoGe's instance files round-trip through recon_trainer.data.formats.moge at the precision its
docstrings state: log-encoded depth (1e-4 relative, NaN and +inf as codes 0 and 65535),
segmentation ids with their JSON labels (exact), 16-bit normals (6e-5 rad) and masks (exact)."""
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from recon_trainer.data.formats import moge
from recon_trainer.errors import DataFileError


def _unit_normals(shape, seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=shape + (3,))
    return normal / np.linalg.norm(normal, axis=-1, keepdims=True)


def _rgb16_codes(path):
    """The samples of a 16-bit RGB PNG whose rows are unfiltered (as write_normal writes it)."""
    with open(path, "rb") as file:
        data = file.read()
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        header = struct.unpack(">IIBBBBB", body) if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    width, height, bit_depth, colour_type = header[:4]
    assert (bit_depth, colour_type) == (16, 2)
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 6 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(int)


def test_depth_round_trip_keeps_1e_minus_4_and_the_unknown_and_sky_codes(tmp_path):
    rng = np.random.default_rng(1)
    depth = np.exp(rng.uniform(np.log(0.01), np.log(900.0), (20, 30))).astype(np.float32)
    depth[:3] = np.inf
    depth[7, 2:9] = np.nan
    path = str(tmp_path / "depth.png")
    moge.write_depth(path, depth)
    with Image.open(path) as image:
        codes = np.array(image)
    assert (codes[:3] == 65535).all() and (codes[7, 2:9] == 0).all()
    back = moge.read_depth(path)
    finite = np.isfinite(depth)
    assert np.isposinf(back[:3]).all() and np.isnan(back[7, 2:9]).all() and np.isfinite(back[finite]).all()
    assert np.abs(back[finite] / depth[finite] - 1).max() < 1e-4


def test_segmentation_round_trip_uint8_uint16_and_no_labels(tmp_path):
    rng = np.random.default_rng(2)
    for dtype, top in ((np.uint8, 255), (np.uint16, 60000)):
        ids = rng.integers(0, top, (9, 11)).astype(dtype)
        labels = {"floor": 1, "wall ü": int(top) - 1, "sky": 0}
        path = str(tmp_path / f"seg_{np.dtype(dtype).name}.png")
        moge.write_segmentation(path, ids, labels)
        back, back_labels = moge.read_segmentation(path)
        assert back.dtype == dtype and np.array_equal(back, ids) and back_labels == labels
        with Image.open(path) as image:
            assert json.loads(image.text["labels"]) == labels and " " not in image.text["labels"].replace("wall ", "")
    path = str(tmp_path / "plain.png")
    moge.write_segmentation(path, np.zeros((2, 3), np.uint8))
    assert moge.read_segmentation(path)[1] is None
    with pytest.raises(ValueError, match="uint8 or uint16"):
        moge.write_segmentation(path, np.zeros((2, 3), np.int32))


def test_segmentation_bad_labels_name_the_file(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("labels", "[1, 2]")
    path = str(tmp_path / "bad_labels.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path, pnginfo=info)
    with pytest.raises(DataFileError, match=r"bad_labels.png: the 'labels' text field is not a JSON object"):
        moge.read_segmentation(path)


def test_normal_round_trip_keeps_6e_minus_5_rad_in_moges_channel_encoding(tmp_path):
    normal = _unit_normals((40, 50))
    normal[3, 4] = np.nan
    path = str(tmp_path / "normal.png")
    moge.write_normal(path, normal)
    back = moge.read_normal(path).astype(np.float64)
    known = ~np.isnan(normal).any(axis=-1)
    assert np.isnan(back[3, 4]).all() and np.isfinite(back[known]).all()
    angle = np.arcsin(np.clip(np.linalg.norm(np.cross(back[known], normal[known]), axis=-1), 0, 1))
    assert angle.max() < 6e-5 and (np.einsum("...k,...k", back[known], normal[known]) > 0).all()
    # the file: 16 bits per channel, R G B = x, y, z codes of n * (0.5, -0.5, -0.5) + 0.5; zeros = unknown
    codes = _rgb16_codes(path)
    expected = np.floor((normal[0, 0] * [0.5, -0.5, -0.5] + 0.5) * 65535)
    assert codes.shape == (40, 50, 3) and np.array_equal(codes[0, 0], expected) and (codes[3, 4] == 0).all()


def test_normal_of_an_8_bit_png_is_refused(tmp_path):
    path = str(tmp_path / "normal_vis.png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
    with pytest.raises(DataFileError, match=r"normal_vis.png: expected a 16-bit RGB normal PNG"):
        moge.read_normal(path)
    with pytest.raises(DataFileError, match=r"missing.png: cannot read the normal PNG"):
        moge.read_normal(str(tmp_path / "missing.png"))


def test_mask_round_trip_and_colour_masks(tmp_path):
    mask = np.random.default_rng(3).random((7, 9)) > 0.5
    path = str(tmp_path / "mask.png")
    moge.write_mask(path, mask)
    with Image.open(path) as image:
        assert image.mode == "L" and set(np.unique(np.array(image))) <= {0, 255}
    assert np.array_equal(moge.read_mask(path), mask)
    colour = np.zeros((7, 9, 3), np.uint8)
    colour[..., 0] = mask * 200
    Image.fromarray(colour).save(path)
    assert np.array_equal(moge.read_mask(path), mask)
    with pytest.raises(DataFileError, match=r"nope.png: cannot read the mask PNG"):
        moge.read_mask(str(tmp_path / "nope.png"))

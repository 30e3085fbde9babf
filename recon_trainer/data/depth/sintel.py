"""MPI Sintel: the depth training set with the stereo training images (MiDaS evaluates all of it).

On-disk layout (the depth and stereo training downloads merged under one root):

    <root>/final_left/<scene>/frame_0001.png    RGB, final render pass (clean_left: the clean pass)
    <root>/depth/<scene>/frame_0001.dpt         depth in scene units
    <root>/occlusions/<scene>/frame_0001.png    8-bit, 255 = occluded (invalid for evaluation)

A .dpt file is little-endian: float32 tag 202021.25, int32 width, int32 height, then
width * height float32 depths, row-major. Frames are numbered from 0001.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, DepthSample
from recon_trainer.data.depth.image_files import open_image, read_rgb
from recon_trainer.data.file_check import DataFile
from recon_trainer.errors import DataFileError

if TYPE_CHECKING:
    from recon_trainer.data.depth.synthetic import DepthViews

DPT_TAG = 202021.25
DPT_HEADER = np.dtype([("tag", "<f4"), ("width", "<i4"), ("height", "<i4")])


@registry.register
class Sintel(DepthDataset):
    """Sintel depth frames; records are (image, .dpt, occlusion PNG or "", scene)."""

    split: str = choice_field("test", ("test",))  # test: every frame of the training scenes (the only split)
    scenes: Tuple[str, ...] = ()  # only these scenes; (): every scene under depth/
    image_folder: str = "final_left"  # final_left or clean_left (the render pass)
    use_occlusions: bool = True  # mask out the pixels occlusions/ marks as occluded
    depth_cap: float = 72.0  # scene units
    eval_metric: str = "absrel"

    def list_samples(self) -> List[Tuple[str, str, str, str]]:
        folders = [self.image_folder, "depth"] + (["occlusions"] if self.use_occlusions else [])
        for folder in folders:
            if not os.path.isdir(os.path.join(self.root, folder)):
                raise ConfigError(f"Sintel: folder {os.path.join(self.root, folder)!r} not found (root={self.root!r})")
        records = []
        for scene in select_scenes(os.path.join(self.root, "depth"), self.scenes, "Sintel"):
            depth_dir = os.path.join(self.root, "depth", scene)
            for name in sorted(n for n in os.listdir(depth_dir) if n.endswith(".dpt")):
                stem = name[: -len(".dpt")] + ".png"
                image = os.path.join(self.root, self.image_folder, scene, stem)
                occlusion = os.path.join(self.root, "occlusions", scene, stem) if self.use_occlusions else ""
                for path in (image, occlusion):
                    if path and not os.path.isfile(path):
                        raise ConfigError(f"Sintel: {path!r} not found for {os.path.join(depth_dir, name)!r}")
                records.append((image, os.path.join(depth_dir, name), occlusion, scene))
        return records

    def record_files(self, record: Tuple[str, str, str, str]) -> Tuple[DataFile, ...]:
        return tuple(DataFile(path) for path in record[:3] if path)

    def load_sample(self, record: Tuple[str, str, str, str]) -> DepthSample:
        image_path, depth_path, occlusion_path, scene = record
        rgb = read_rgb(image_path)
        depth = read_dpt(depth_path)
        mask = None
        if occlusion_path:
            with open_image(occlusion_path) as image:
                mask = np.asarray(image.convert("L")) < 128
        for name, array in ((depth_path, depth), (occlusion_path, mask)):
            if array is not None and array.shape != rgb.shape[:2]:
                raise DataFileError(f"Sintel: {name!r} is {array.shape}, its image {image_path!r} {rgb.shape[:2]}")
        return DepthSample(image=rgb, depth=depth, mask=mask, path=image_path, sequence=scene)


def select_scenes(folder: str, scenes: Sequence[str], owner: str) -> List[str]:
    """The sorted sub-folders of `folder`, or `scenes` after checking each exists there."""
    if not scenes:
        return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
    for scene in scenes:
        if not os.path.isdir(os.path.join(folder, scene)):
            raise ConfigError(f"{owner}: scene folder {os.path.join(folder, scene)!r} not found")
    return sorted(scenes)


def dpt_shape(header: bytes, n_bytes: int) -> Tuple[int, int]:
    """(height, width) of a .dpt file from its first bytes (at least the 12-byte header) and its
    size in bytes; ValueError saying what is wrong when the tag or the size does not match."""
    if n_bytes < DPT_HEADER.itemsize or len(header) < DPT_HEADER.itemsize:
        raise ValueError(f"{n_bytes} bytes, too short for a .dpt header ({DPT_HEADER.itemsize} bytes)")
    fields = np.frombuffer(header, DPT_HEADER, count=1)[0]
    if fields["tag"] != np.float32(DPT_TAG):
        raise ValueError(f".dpt tag {float(fields['tag'])!r} found, {DPT_TAG} expected")
    width, height = int(fields["width"]), int(fields["height"])
    expected = DPT_HEADER.itemsize + 4 * width * height
    if width <= 0 or height <= 0 or n_bytes != expected:
        raise ValueError(f"{n_bytes} bytes for a {width}x{height} .dpt, expected {expected}")
    return height, width


def read_dpt(path: str) -> np.ndarray:
    """(H, W) float32 depth from a Sintel .dpt file; DataFileError naming the file when malformed."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        height, width = dpt_shape(data, len(data))
    except (OSError, ValueError) as error:
        raise DataFileError(f"{path!r}: {error}") from None
    return np.frombuffer(data, "<f4", offset=DPT_HEADER.itemsize).reshape(height, width).astype(np.float32)


def write_dpt(path: str, depth: np.ndarray) -> None:
    """Write (H, W) depth as a .dpt file (float32, exact)."""
    height, width = depth.shape
    header = np.array([(DPT_TAG, width, height)], dtype=DPT_HEADER)
    with open(path, "wb") as handle:
        handle.write(header.tobytes() + np.ascontiguousarray(depth, dtype="<f4").tobytes())


def write_sintel(out_dir: str, views: "DepthViews", scenes: Sequence[str] = ("alley_1",)) -> str:
    """Write views as Sintel frames, split into `scenes` in order: final_left PNGs, exact .dpt depth
    and occlusion PNGs marking a box of a quarter of each side (moving with the frame) as occluded.
    Returns out_dir (the reader's root)."""
    height, width = views.depth.shape[1:]
    for scene, ids in zip(scenes, np.array_split(np.arange(len(views.rgb)), len(scenes))):
        folders = {kind: os.path.join(out_dir, kind, scene) for kind in ("final_left", "depth", "occlusions")}
        for folder in folders.values():
            os.makedirs(folder, exist_ok=True)
        for frame, i in enumerate(ids, start=1):
            stem = f"frame_{frame:04d}"
            Image.fromarray(views.rgb[i]).save(os.path.join(folders["final_left"], stem + ".png"))
            write_dpt(os.path.join(folders["depth"], stem + ".dpt"), views.depth[i])
            occluded = np.zeros((height, width), dtype=np.uint8)
            top, left = (frame * 3) % (height - height // 4), (frame * 5) % (width - width // 4)
            occluded[top : top + max(1, height // 4), left : left + max(1, width // 4)] = 255
            Image.fromarray(occluded).save(os.path.join(folders["occlusions"], stem + ".png"))
    return out_dir

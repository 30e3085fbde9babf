"""Online reconstruction of your own video or image folder: frames in, a coloured point cloud and a
confidence per frame out.

Frames are prepared as DUSt3R's load_images does (the reference for Spann3R's demo, which runs at
224): images are turned upright by their EXIF orientation; below 512 pixels the short side is
resized to `size` (Lanczos when shrinking, bicubic when enlarging) and the centre size x size cut
out (DUSt3R: 224); from 512 on the long side is resized to `size` and the centre cropped to
multiples of the patch size, 4:3 when the image is square (DUSt3R: 512). The network gets the
pixel values in [-1, 1].

Outputs of `write_reconstruction` (every file written atomically): pointcloud.ply (the points of
every frame whose confidence is above the threshold, coloured, with a `conf` and a `frame`
property; camera-0 OpenCV coordinates), confidence.npy (T, H, W) float32, points.npy
(T, H, W, 3) float32, confidence/<i>_<name>.png (the per-frame confidence, colourised), frames.txt
(the frame names in order).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps

from recon_trainer.errors import UserError
from recon_trainer.fileio import atomic_path, atomic_write
from recon_trainer.visualization.images import list_images
from recon_trainer.visualization.point_clouds import write_ply
from recon_trainer.visualization.video import colorize_depth, to_uint8_frames

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclasses.dataclass
class FrameReconstruction:
    """T frames reconstructed online. points: (T, H, W, 3) camera-0 coordinates; conf: (T, H, W);
    colors: (T, H, W, 3) in [0, 1]; names: the frames' names; seconds: the forward's wall time."""

    points: torch.Tensor
    conf: torch.Tensor
    colors: torch.Tensor
    names: List[str]
    seconds: float

    @property
    def fps(self) -> float:
        """Frames per second of the forward pass."""
        return len(self.names) / max(self.seconds, 1e-9)


SQUARE_BELOW = 512  # sizes below this are cut square (DUSt3R's 224), from it on the aspect is kept (its 512)


def check_size(size: int, patch_size: int, key: str) -> None:
    """UserError naming `key` unless `size` gives the network whole patches (module doc): below 512 a
    positive multiple of patch_size (the square's side), from 512 on any size (the crop rounds)."""
    if size < patch_size or (size < SQUARE_BELOW and size % patch_size):
        raise UserError(f"{key}={size}: expected a multiple of the patch size {patch_size} below {SQUARE_BELOW} "
                        f"(e.g. 224), or >= {SQUARE_BELOW}")


def prepare_frame(image: Image.Image, size: int, patch_size: int = 16) -> torch.Tensor:
    """A PIL image as the network's input (module doc): (3, H, W) float in [0, 1]."""
    image = image.convert("RGB")
    width, height = image.size
    square = size < SQUARE_BELOW
    long_edge = round(size * max(width / height, height / width)) if square else size
    scale = long_edge / max(width, height)
    resample = Image.LANCZOS if max(width, height) > long_edge else Image.BICUBIC
    image = image.resize((int(round(width * scale)), int(round(height * scale))), resample)
    w, h = image.size
    cx, cy = w // 2, h // 2
    if square:
        half = min(cx, cy)
        box = (cx - half, cy - half, cx + half, cy + half)
    else:
        half_w = ((2 * cx) // patch_size) * patch_size / 2
        half_h = ((2 * cy) // patch_size) * patch_size / 2
        if w == h:
            half_h = 3 * half_w / 4
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    array = np.asarray(image.crop(box), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_images(paths: Sequence[str]) -> List[Image.Image]:
    """The image files as RGB PIL images, turned upright by their EXIF orientation as DUSt3R's
    load_images does (phone photos); UserError naming a file that is not a readable image."""
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                images.append(ImageOps.exif_transpose(image).convert("RGB"))
        except OSError as error:
            raise UserError(f"{path}: cannot read the image: {error}") from None
    return images


def read_frames(source: str, kf_every: int = 1, max_frames: int = 0) -> Tuple[List[Image.Image], List[str]]:
    """Every kf_every-th frame of a video file or of a folder's images (sorted by name), at most
    max_frames (0: all); UserError naming `source` when it holds no frame."""
    if kf_every < 1:
        raise UserError(f"kf_every={kf_every}: expected >= 1")
    if os.path.isdir(source):
        paths = list_images(source)[::kf_every]
        paths = paths[:max_frames] if max_frames > 0 else paths
        frames, names = read_images(paths), [os.path.splitext(os.path.basename(path))[0] for path in paths]
    elif os.path.isfile(source) and source.lower().endswith(VIDEO_SUFFIXES):
        import imageio.v3 as iio

        frames, names = [], []
        try:
            for index, frame in enumerate(iio.imiter(source, plugin="pyav" if _has_pyav() else None)):
                if index % kf_every:
                    continue
                frames.append(Image.fromarray(np.asarray(frame)[..., :3]))
                names.append(f"frame{index:06d}")
                if 0 < max_frames <= len(frames):
                    break
        except Exception as error:  # imageio raises many kinds for a broken or unsupported file
            raise UserError(f"{source}: cannot read the video: {_one_line(error)}") from None
    else:
        raise UserError(f"{source!r}: expected a folder of images or a video file ({', '.join(VIDEO_SUFFIXES)})")
    if len(frames) < 2:
        raise UserError(f"{source}: {len(frames)} frame(s) after kf_every={kf_every}; a reconstruction needs >= 2")
    return frames, names


def _one_line(error: Exception) -> str:
    """An error's first line and, for a longer message (ffmpeg's whole log), its last."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ({lines[-1][:200]})"


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@torch.no_grad()
def reconstruct_frames(network: torch.nn.Module, frames: Sequence[Image.Image], names: Sequence[str],
                       device: torch.device, size: int, patch_size: int = 16,
                       offline: bool = False) -> FrameReconstruction:
    """Prepare the frames (module doc) and run `network(images, true_shape)` (a Spann3RNetwork:
    online, the memory skipping frames too similar to the working memory) in eval mode over them
    as one sequence; with `offline`, its offline_reconstruction (the frame order chosen by pairwise
    scores; the points are in the coordinates of the first frame it chose, frames in input order)."""
    images = torch.stack([prepare_frame(frame, size, patch_size) for frame in frames])
    if images.shape[-2] > images.shape[-1]:
        raise UserError(f"portrait frames ({images.shape[-2]}x{images.shape[-1]} at size {size}): Spann3R reads "
                        f"landscape or square input; use a size below {SQUARE_BELOW} (a centre square, Spann3R: 224)")
    t, _, h, w = images.shape
    true_shape = torch.tensor([h, w], dtype=torch.int64).expand(1, t, 2).to(device)
    was_training = network.training
    network.eval()
    try:
        start = time.perf_counter()
        inputs = images[None].to(device) * 2.0 - 1.0
        if offline:
            result = network.offline_reconstruction(inputs, true_shape)
            points, conf = result.points, result.conf
        else:
            points, conf = network(inputs, true_shape).per_frame()
        seconds = time.perf_counter() - start
    finally:
        network.train(was_training)
    return FrameReconstruction(points[0].float().cpu(), conf[0].float().cpu(), images.permute(0, 2, 3, 1),
                               list(names), seconds)


def reconstruct_images(network: torch.nn.Module, image_paths: Sequence[str], device: torch.device,
                       size: int, patch_size: int = 16) -> FrameReconstruction:
    """reconstruct_frames over image files (in the given order)."""
    names = [os.path.splitext(os.path.basename(path))[0] for path in image_paths]
    return reconstruct_frames(network, read_images(image_paths), names, device, size, patch_size)


def write_reconstruction(result: FrameReconstruction, out_dir: str, conf_threshold: float = 1.5) -> List[str]:
    """Write the outputs of the module doc into out_dir; the paths written. Points whose
    confidence is at most conf_threshold (>= 1; 1: every point) are left out of the PLY."""
    os.makedirs(os.path.join(out_dir, "confidence"), exist_ok=True)
    keep = result.conf > conf_threshold
    frame_index = torch.arange(len(result.names))[:, None, None].expand_as(result.conf)
    written = [write_ply(os.path.join(out_dir, "pointcloud.ply"), result.points[keep].numpy(),
                         result.colors[keep].numpy(),
                         {"conf": result.conf[keep].numpy(), "frame": frame_index[keep].float().numpy()})]
    for name, array in (("confidence.npy", result.conf), ("points.npy", result.points)):
        path = os.path.join(out_dir, name)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, array.numpy().astype(np.float32))
        written.append(path)
    colored = colorize_depth(-torch.log(result.conf)[:, None], percentile=0.0)
    for i, (name, image) in enumerate(zip(result.names, to_uint8_frames(colored))):
        path = os.path.join(out_dir, "confidence", f"{i:04d}_{name}.png")
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        written.append(path)
    path = os.path.join(out_dir, "frames.txt")
    atomic_write(path, "\n".join(result.names) + "\n")
    return written + [path]

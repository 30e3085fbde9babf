"""Writing MoGe's predictions for a user's images (tools/moge_infer.py and recon_visualizer
images_dir=...): per image a folder with the maps, the field of view, a PLY point cloud and a
GLB mesh, every file written atomically.
"""
import json
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from recon_trainer.errors import DataFileError
from recon_trainer.fileio import atomic_path, atomic_write
from recon_trainer.visualization.images import read_image
from recon_trainer.visualization.point_clouds import opencv_to_opengl, to_uint8_colors, write_ply
from recon_trainer.visualization.video import colorize_depth, to_uint8_frames

from .export import grid_mesh, write_glb
from .geometry import depth_edges, intrinsics_to_fov, points_to_normals
from .inference import infer
from .visualization import normal_colors

EDGE_RTOL = 0.04  # MoGe's default threshold for removing points / faces at depth discontinuities
MAP_FILES = ("points.npy", "depth.npy", "depth_vis.png", "mask.png", "normal.png", "fov.json")


def check_images(image_paths: Sequence[str]) -> None:
    """DataFileError naming the first file that is missing or whose header is not an image's
    (only the headers are read)."""
    for path in image_paths:
        if not os.path.isfile(path):
            raise DataFileError(f"image {path!r} does not exist (or is not a file)")
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as error:
            raise DataFileError(f"image {path!r} is not an image PIL can read: {error}") from error


def read_user_image(path: str) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1]; DataFileError naming the file if it cannot be decoded."""
    try:
        return read_image(path)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataFileError(f"image {path!r} cannot be decoded: {error}") from error


def output_folders(image_paths: Sequence[str], out_dir: str) -> List[str]:
    """out_dir/<stem> per image; stems shared by several images (a.jpg, a.png) use the file name
    with its dot replaced (a_jpg, a_png) instead."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in image_paths]
    counts = Counter(stems)
    names = [stem if counts[stem] == 1 else os.path.basename(path).replace(".", "_")
             for stem, path in zip(stems, image_paths)]
    return [os.path.join(out_dir, name) for name in names]


def write_predictions(
    network: nn.Module,
    image_paths: Sequence[str],
    out_dir: str,
    device: torch.device,
    resolution_level: int = 9,
    num_tokens: Optional[int] = None,
    fov_x: Optional[float] = None,
    use_fp16: bool = False,
    maps: bool = True,
    ply: bool = True,
    glb: bool = True,
    edge_rtol: float = EDGE_RTOL,
) -> List[str]:
    """Run `infer` on each image and write into out_dir/<stem>/ (see output_folders):

    maps: points.npy (H, W, 3) float32 camera-space points in OpenCV axes (+inf where masked),
      depth.npy (H, W) float32 (+inf where masked; v1 up to scale, v2 metric), depth_vis.png,
      mask.png (255 valid), normal.png (the predicted normals of v2 networks with a normal head,
      else normals of the point map; OpenGL-style colours), fov.json {"fov_x", "fov_y" degrees,
      "intrinsics" 3x3 normalised}.
    ply: pointcloud.ply, the valid points off depth discontinuities (edge_rtol) in OpenGL axes
      (x right, y up, z backward, as MoGe exports), with the image colours and nx ny nz normals.
    glb: mesh.glb, the pixel grid triangulated (export.grid_mesh, edge_rtol) with vertex colours
      and normals, OpenGL axes.

    fov_x (degrees) fixes the horizontal field of view; the other arguments go to `infer`.
    The network runs in eval mode on `device` (its mode is restored). Returns the per-image
    folders. DataFileError for an image that is missing or not an image (checked before any is
    run) or that cannot be decoded."""
    check_images(image_paths)
    folders = output_folders(image_paths, out_dir)
    was_training = network.training
    network.eval().to(device)
    try:
        for path, folder in zip(image_paths, folders):
            image = read_user_image(path)
            output = infer(network, image.to(device), fov_x=fov_x, resolution_level=resolution_level,
                           num_tokens=num_tokens, use_fp16=use_fp16)
            prediction = {key: (value.float() if value.is_floating_point() else value).cpu()
                          for key, value in output.items()}
            _write_image_outputs(prediction, image, folder, maps=maps, ply=ply, glb=glb, edge_rtol=edge_rtol)
    finally:
        network.train(was_training)
    return folders


def _normals(prediction: Dict[str, torch.Tensor]) -> torch.Tensor:
    """(H, W, 3) unit normals in OpenCV axes: the predicted ones, else from the point map."""
    if "normal" in prediction:
        return prediction["normal"]
    normals, _ = points_to_normals(prediction["points"], prediction["mask"])
    return normals


def _write_image_outputs(prediction: Dict[str, torch.Tensor], image: torch.Tensor, folder: str, *, maps: bool,
                         ply: bool, glb: bool, edge_rtol: float) -> None:
    points, depth, mask = prediction["points"], prediction["depth"], prediction["mask"]
    normals = _normals(prediction)
    colors = to_uint8_colors(image.permute(1, 2, 0).numpy())  # (H, W, 3)
    os.makedirs(folder, exist_ok=True)
    if maps:
        _save_npy(os.path.join(folder, "points.npy"), points.numpy())
        _save_npy(os.path.join(folder, "depth.npy"), depth.numpy())
        valid = mask & torch.isfinite(depth)
        depth_colors = colorize_depth(torch.where(valid, depth, 0.0)[None, None], valid[None, None].float())
        _save_png(os.path.join(folder, "depth_vis.png"), to_uint8_frames(depth_colors)[0])
        _save_png(os.path.join(folder, "mask.png"), mask.numpy().astype(np.uint8) * 255)
        normal_image = normal_colors(normals, mask)[None]
        _save_png(os.path.join(folder, "normal.png"), to_uint8_frames(normal_image)[0])
        fov_x, fov_y = (float(torch.rad2deg(angle)) for angle in intrinsics_to_fov(prediction["intrinsics"]))
        fov = {"fov_x": fov_x, "fov_y": fov_y, "intrinsics": prediction["intrinsics"].tolist()}
        atomic_write(os.path.join(folder, "fov.json"), json.dumps(fov, indent=2))
    points_gl, normals_gl = opencv_to_opengl(points.numpy()), opencv_to_opengl(normals.numpy())
    if ply:
        keep = (mask & torch.isfinite(points).all(dim=-1) & ~depth_edges(depth, edge_rtol, mask)).numpy()
        normal_properties = {name: normals_gl[keep][:, axis] for axis, name in enumerate(("nx", "ny", "nz"))}
        write_ply(os.path.join(folder, "pointcloud.ply"), points_gl[keep], colors[keep], normal_properties)
    if glb:
        vertices, faces, pixels = grid_mesh(points_gl, mask.numpy(), rtol=edge_rtol)
        write_glb(os.path.join(folder, "mesh.glb"), vertices, faces, colors.reshape(-1, 3)[pixels],
                  normals_gl.reshape(-1, 3)[pixels])


def _save_npy(path: str, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array.astype(np.float32))


def _save_png(path: str, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")

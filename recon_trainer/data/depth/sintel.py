"""MPI Sintel: the depth training set with the stereo training images (MiDaS evaluates all of it).

On-disk layout (the depth and stereo training downloads merged under one root):

    <root>/final_left/<scene>/frame_0001.png    RGB, final render pass (clean_left: the clean pass)
    <root>/depth/<scene>/frame_0001.dpt         depth in scene units
    <root>/occlusions/<scene>/frame_0001.png    8-bit, 255 = occluded (invalid for evaluation)
    <root>/camdata_left/<scene>/frame_0001.cam  intrinsics and extrinsics (the depth download has them)

Depth files are .dpt, camera files .cam (recon_trainer/data/formats/sintel_dpt.py). Frames are
numbered from 0001.

Records: depth in Sintel's scene units, labelled "metric" (Blender units, about metres: the
depth_cap of 72 is MiDaS's), label type "synthetic", sequence = the scene, frame = the frame
number; the non-occluded pixels as extras["eval_mask"] (H, W) bool (with use_occlusions). With
camdata_left/, the intrinsics (K of the .cam, integer pixel centres: half a pixel is added,
data/records.py) and camera_to_world (the inverse of its world-to-camera [R | t], OpenCV axes);
without it, both are None.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, depth_tensor, image_tensor
from recon_trainer.data.depth.image_files import open_image, read_rgb
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.formats.poses import rigid_matrix
from recon_trainer.data.formats.sintel_dpt import read_cam, read_dpt, write_cam, write_dpt
from recon_trainer.data.records import (
    ViewRecord,
    intrinsics_centre_to_corner,
    intrinsics_corner_to_centre,
    invert_pose,
    opencv_view_from_cameras,
)
from recon_trainer.errors import DataFileError

if TYPE_CHECKING:
    from recon_trainer.data.depth.synthetic import DepthViews


@registry.register
class Sintel(DepthDataset):
    """Sintel depth frames; samples are (image, .dpt, occlusion PNG or "", scene)."""

    LABEL_TYPE = "synthetic"

    split: str = choice_field("test", ("test",))  # test: every frame of the training scenes (the only split)
    scenes: Tuple[str, ...] = ()  # only these scenes; (): every scene under depth/
    image_folder: str = "final_left"  # final_left or clean_left (the render pass)
    use_occlusions: bool = True  # mask out the pixels occlusions/ marks as occluded
    depth_cap: float = 72.0  # scene units
    eval_metric: str = "absrel"

    def sample_sequence(self, sample: Tuple[str, str, str, str]) -> str:
        """The sequence a sample belongs to (DepthSequences groups by it): its scene."""
        return sample[3]

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

    def camera_path(self, depth_path: str, scene: str) -> str:
        """<root>/camdata_left/<scene>/<frame>.cam of a depth file ("" without camdata_left/)."""
        if not os.path.isdir(os.path.join(self.root, "camdata_left")):
            return ""
        name = os.path.splitext(os.path.basename(depth_path))[0] + ".cam"
        return os.path.join(self.root, "camdata_left", scene, name)

    def record_files(self, sample: Tuple[str, str, str, str]) -> Tuple[DataFile, ...]:
        camera = self.camera_path(sample[1], sample[3])
        return tuple(DataFile(path) for path in sample[:3] if path) + ((DataFile(camera, "file"),) if camera else ())

    def load_sample(self, sample: Tuple[str, str, str, str]) -> ViewRecord:
        image_path, depth_path, occlusion_path, scene = sample
        rgb = read_rgb(image_path)
        depth = read_dpt(depth_path)
        mask = None
        if occlusion_path:
            with open_image(occlusion_path) as image:
                mask = np.asarray(image.convert("L")) < 128
        for name, array in ((depth_path, depth), (occlusion_path, mask)):
            if array is not None and array.shape != rgb.shape[:2]:
                raise DataFileError(f"Sintel: {name!r} is {array.shape}, its image {image_path!r} {rgb.shape[:2]}")
        intrinsics = camera_to_world = None
        camera_path = self.camera_path(depth_path, scene)
        if camera_path:
            camera = read_cam(camera_path)
            intrinsics = intrinsics_centre_to_corner(torch.from_numpy(camera.intrinsics)).float()
            world_to_camera = rigid_matrix(camera.world_to_camera[:, :3], camera.world_to_camera[:, 3])
            camera_to_world = invert_pose(torch.from_numpy(world_to_camera)).float()
        stem = os.path.splitext(os.path.basename(image_path))[0]
        return ViewRecord(
            image=image_tensor(rgb),
            depth=depth_tensor(depth),
            depth_kind="metric",
            intrinsics=intrinsics,
            camera_to_world=camera_to_world,
            sequence=scene,
            frame=int(stem[len("frame_"):]) if stem.startswith("frame_") and stem[6:].isdigit() else 0,
            path=image_path,
            extras={} if mask is None else {"eval_mask": torch.from_numpy(np.ascontiguousarray(mask))},
        )


def select_scenes(folder: str, scenes: Sequence[str], owner: str) -> List[str]:
    """The sorted sub-folders of `folder`, or `scenes` after checking each exists there."""
    if not scenes:
        return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
    for scene in scenes:
        if not os.path.isdir(os.path.join(folder, scene)):
            raise ConfigError(f"{owner}: scene folder {os.path.join(folder, scene)!r} not found")
    return sorted(scenes)


def write_sintel(out_dir: str, views: "DepthViews", scenes: Sequence[str] = ("alley_1",)) -> str:
    """Write views as Sintel frames, split into `scenes` in order: final_left PNGs, exact .dpt depth
    and occlusion PNGs marking a box of a quarter of each side (moving with the frame) as occluded;
    with views.cameras, camdata_left .cam files of each view's K (integer pixel centres) and
    world-to-camera matrix. Returns out_dir (the reader's root)."""
    height, width = views.depth.shape[1:]
    kinds = ("final_left", "depth", "occlusions") + (("camdata_left",) if views.cameras is not None else ())
    for scene, ids in zip(scenes, np.array_split(np.arange(len(views.rgb)), len(scenes))):
        folders = {kind: os.path.join(out_dir, kind, scene) for kind in kinds}
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
            if views.cameras is not None:
                intrinsics, camera_to_world = opencv_view_from_cameras(views.cameras[int(i)])
                write_cam(os.path.join(folders["camdata_left"], stem + ".cam"),
                          intrinsics_corner_to_centre(intrinsics[0].double()).numpy(),
                          invert_pose(camera_to_world[0].double()).numpy())
    return out_dir

"""Spann3RSyntheticScenes: the built-in data of the spann3r and dust3r_pairs configs.

Rooms and objects rendered along smooth camera paths (recon_trainer/data/multiview/synthetic_views.py)
written in the on-disk layouts of the datasets the configs name, under the folders their
expressions name (ScanNet's SimpleRecon export under data/scannet, 7-Scenes under data/7scenes,
...), so an expression runs unchanged on them. Every layout gets its own rooms (the seed moves
with the layout), so the evaluation layouts hold scenes no training layout has.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Tuple

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.builtin_data import BuiltinDataBase
from recon_trainer.data.multiview.synthetic_copies import LAYOUTS, write_layout

# the folders of spann3r.yaml's expressions and the layout written in each
SPANN3R_FOLDERS = {
    "data/co3d_preprocessed_50": "co3d", "data/blendmvg": "blendedmvs", "data/scannetpp": "scannetpp",
    "data/habitat_5frame": "habitat", "data/scannet": "scannet", "data/arkit_lowres": "arkitscenes",
    "data/7scenes": "7scenes", "data/neural_rgbd": "nrgbd", "data/dtu_test": "dtu",
}


@registry.register
class Spann3RSyntheticScenes(BuiltinDataBase):
    """Synthetic sequences in the layouts of the multi-view datasets (module doc)."""

    VERSION = 1

    # dataset folder (relative, as the expressions' ROOT names it) -> layout (data/multiview/synthetic_copies.py);
    # {}: every folder of the spann3r config (SPANN3R_FOLDERS)
    folders: Dict[str, str] = dataclasses.field(default_factory=dict)
    n_scenes: int = 3  # scenes (sequences) per layout and split
    n_frames: int = 16  # frames per scene
    image_size: Tuple[int, int] = (96, 128)  # rendered (H, W); the datasets crop and resize to their resolution
    seed: int = 0  # seeds the rooms and camera paths

    def __post_init__(self) -> None:
        for folder, layout in self.layout_folders().items():
            if layout not in LAYOUTS:
                raise ConfigError(f"Spann3RSyntheticScenes.folders.{folder}: unknown layout {layout!r}; "
                                  f"expected one of {sorted(LAYOUTS)}")
            if os.path.isabs(folder) or ".." in folder.split("/"):
                raise ConfigError(f"Spann3RSyntheticScenes.folders: {folder!r}: expected a relative path inside the "
                                  "cache")
        if self.n_scenes < 1 or self.n_frames < 2:
            raise ConfigError(f"Spann3RSyntheticScenes: n_scenes={self.n_scenes} (>= 1) and n_frames={self.n_frames} "
                              "(>= 2) expected")

    def layout_folders(self) -> Dict[str, str]:
        """folders, or SPANN3R_FOLDERS when it is empty."""
        return dict(self.folders) or dict(SPANN3R_FOLDERS)

    def describe(self) -> str:
        layouts = ", ".join(sorted(set(self.layout_folders().values())))
        return (f"synthetic rooms rendered along camera paths in the layouts of {layouts} ({self.n_scenes} scenes of "
                f"{self.n_frames} frames each, {self.image_size[0]}x{self.image_size[1]})")

    def write(self, folder: str) -> None:
        for index, (path, layout) in enumerate(sorted(self.layout_folders().items())):
            write_layout(layout, os.path.join(folder, os.path.normpath(path)), self.n_scenes, self.n_frames,
                         tuple(self.image_size), self.seed + 1000 * index)

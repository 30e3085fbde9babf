"""Tiny synthetic copies of the multi-view datasets, each in its original on-disk layout: the
registry of their writers (tools/make_multiview_datasets.py, the methods' built-in data, tests).

Each writer renders rooms or objects along smooth camera paths (synthetic_views.py) and takes
(out_dir, n_scenes, n_frames, image_size_hw, seed); it returns the folder written.
"""
from __future__ import annotations

import importlib
from typing import Dict, NamedTuple, Tuple


class Layout(NamedTuple):
    """A layout's usual folder name, its writer ("module:function") and the dataset class reading it."""

    folder: str
    writer: str
    dataset: str


LAYOUTS: Dict[str, Layout] = {
    "scannet": Layout("scannet", "recon_trainer.data.formats.scannet:write_synthetic_copy", "Scannet"),
    "scannetpp": Layout("scannetpp", "recon_trainer.data.formats.scannetpp:write_synthetic_copy", "Scannetpp"),
    "arkitscenes": Layout("arkit_lowres", "recon_trainer.data.formats.arkitscenes:write_synthetic_copy", "ArkitScene"),
    "habitat": Layout("habitat_5frame", "recon_trainer.data.formats.habitat:write_synthetic_copy", "Habitat"),
    "co3d": Layout("co3d_preprocessed_50", "recon_trainer.data.formats.co3d_dust3r:write_synthetic_copy", "Co3d"),
    "blendedmvs": Layout("blendmvg", "recon_trainer.data.formats.blendedmvs:write_synthetic_copy", "BlendMVS"),
    "7scenes": Layout("7scenes", "recon_trainer.data.formats.seven_scenes:write_synthetic_copy", "SevenScenes"),
    "nrgbd": Layout("neural_rgbd", "recon_trainer.data.formats.nrgbd:write_synthetic_copy", "NRGBD"),
    "dtu": Layout("dtu_test", "recon_trainer.data.formats.dtu:write_synthetic_copy", "DTU"),
}


def write_layout(layout: str, out_dir: str, n_scenes: int, n_frames: int, image_size_hw: Tuple[int, int],
                 seed: int = 0) -> str:
    """Write a tiny copy of `layout` (a key of LAYOUTS) into out_dir; the folder written."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown multi-view layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    module, name = LAYOUTS[layout].writer.split(":")
    writer = getattr(importlib.import_module(module), name)
    return writer(out_dir, n_scenes, n_frames, tuple(image_size_hw), seed)

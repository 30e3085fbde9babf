"""MiDaS's built-in data: synthetic rooms written as tiny copies of its seven datasets, each in its
original layout (recon_trainer/data/depth/synthetic.py), read by the midas configs when no
data_root is given."""
from __future__ import annotations

from recon_trainer.config import registry
from recon_trainer.data.builtin_data import BuiltinDataBase
from recon_trainer.data.depth.synthetic import DATASET_LAYOUTS, write_depth_datasets


@registry.register
class MidasSyntheticDatasets(BuiltinDataBase):
    """ReDWeb (train and val), KITTI, Sintel, TUM, NYUv2, ETH3D and DIW, rendered from synthetic rooms
    with exact depth; each dataset has its own rooms and depth range, so the test sets stay zero-shot."""

    n_images: int = 48  # images per dataset
    height: int = 64  # image height in pixels
    width: int = 64  # image width in pixels
    seed: int = 0  # seeds the rooms and cameras

    def describe(self) -> str:
        return (f"synthetic rooms in the layouts of {', '.join(DATASET_LAYOUTS)} "
                f"({self.n_images} images of {self.height}x{self.width} each)")

    def write(self, folder: str) -> None:
        write_depth_datasets(folder, list(DATASET_LAYOUTS), n_images=self.n_images,
                             image_size_hw=(self.height, self.width), seed=self.seed)

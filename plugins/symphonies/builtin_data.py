"""SymphoniesSyntheticRooms: the built-in data of the symphonies_nyu config.

Rooms (floor, walls, ceiling and a few boxes of furniture classes) written in NYUv2's exact layout
as the usage guide lays it out (recon_trainer/data/ssc/synthetic_rooms.py): SSCNet's depthbin files
(labels at 2 cm, colour JPEG, depth PNG) under depthbin/NYU{train,test} and MonoScene's pkl labels
under preprocess/base/NYU{train,test}, so the config's expressions run unchanged on them.
"""
from __future__ import annotations

import os
from typing import Tuple

from recon_trainer.config import ConfigError, registry
from recon_trainer.data.builtin_data import BuiltinDataBase
from recon_trainer.data.ssc.synthetic_rooms import write_synthetic_nyu


@registry.register
class SymphoniesSyntheticRooms(BuiltinDataBase):
    """Synthetic rooms in NYUv2's SSC layout (module doc)."""

    VERSION = 1

    n_train: int = 24  # rooms of the train split
    n_test: int = 8  # rooms of the test split (other rooms: the seed moves with the split)
    image_size: Tuple[int, int] = (480, 640)  # (H, W) of the images (NYU: 480 x 640; K scales with it)
    seed: int = 0  # seeds the rooms

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_test < 1:
            raise ConfigError(f"SymphoniesSyntheticRooms: n_train={self.n_train} and n_test={self.n_test}: expected "
                              "1 or more")

    def describe(self) -> str:
        return (f"synthetic rooms in NYUv2's depthbin and MonoScene pkl layout ({self.n_train} train and "
                f"{self.n_test} test rooms, {self.image_size[0]}x{self.image_size[1]})")

    def write(self, folder: str) -> None:
        for index, (split, count) in enumerate((("train", self.n_train), ("test", self.n_test))):
            names = [f"NYU{number:04d}_0000" for number in range(1 + 1000 * index, 1 + 1000 * index + count)]
            write_synthetic_nyu(os.path.join(folder, "depthbin"), os.path.join(folder, "preprocess", "base"), split,
                                names, image_hw=tuple(self.image_size), seed=self.seed + 7919 * index)

"""DIW (Depth in the Wild): web images with one human-annotated ordinal point pair each.

On-disk layout (as distributed: DIW_test.tar.gz, DIW_train_val.tar.gz, DIW_Annotations.tar.gz,
unpacked side by side):

    <root>/DIW_test/<name>.thumb              images (JPEG content whatever the extension)
    <root>/DIW_train_val/<name>.thumb
    <root>/DIW_Annotations/DIW_test.csv       split "test"
    <root>/DIW_Annotations/DIW_train_val.csv  split "train"

Each CSV record is two lines: the image path relative to <root> (e.g. "./DIW_test/<name>.thumb"),
then "y_A,x_A,y_B,x_B,relation,W,H": 1-based pixel coordinates of points A and B in a W x H image,
and relation '<' (A is closer than B) or '>' (A is farther). This is the field order the DIW
authors' loaders parse (y before x, '<' -> -1, '>' -> +1); when the image file is not W x H the
coordinates are scaled to its size. Records of the same image are grouped into one item (the
public test set has one pair per image). Records carry extras["ordinal_pairs"], (P, 5) int64 rows
(y_A, x_A, y_B, x_B, relation) with 0-based coordinates and relation -1 ('<') or +1 ('>'), and no
depth (depth None; depth_kind "relative", what the pairs order; label type "ordinal"), intrinsics
or pose; FrameData items carry the pairs as meta["ordinal_pairs"].
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import torch

from recon_trainer.config import ConfigError, registry
from recon_trainer.config.choices import choice_field
from recon_trainer.data.depth.base import DepthDataset, image_tensor
from recon_trainer.data.depth.image_files import read_rgb
from recon_trainer.data.file_check import DataFile
from recon_trainer.data.records import ViewRecord
from recon_trainer.errors import DataFileError

ANNOTATION_FILES = {"test": "DIW_test.csv", "train": "DIW_train_val.csv"}
RELATIONS = {"<": -1, ">": 1}

Annotation = Tuple[int, int, int, int, int, int, int]  # y_A, x_A, y_B, x_B (1-based), relation, W, H


@registry.register
class DIW(DepthDataset):
    """DIW images with ordinal pairs (no dense depth); samples are (image path, [annotations])."""

    LABEL_TYPE = "ordinal"

    split: str = choice_field("test", ANNOTATION_FILES)  # test (DIW_test.csv) or train (DIW_train_val.csv)
    depth_cap: float = 0.0  # no depth
    eval_metric: str = "whdr"

    def list_samples(self) -> List[Tuple[str, List[Annotation]]]:
        csv_path = os.path.join(self.root, "DIW_Annotations", ANNOTATION_FILES[self.split])
        grouped: Dict[str, List[Annotation]] = {}
        for image, annotation in read_annotations(csv_path):
            grouped.setdefault(image, []).append(annotation)
        records = []
        for image, image_annotations in grouped.items():
            path = os.path.normpath(os.path.join(self.root, image))
            if not os.path.isfile(path):
                raise ConfigError(f"DIW: image {path!r} listed in {csv_path!r} not found")
            records.append((path, image_annotations))
        return records

    def record_files(self, sample: Tuple[str, List[Annotation]]) -> Tuple[DataFile, ...]:
        return (DataFile(sample[0], "image"),)  # JPEG content named .thumb

    def load_sample(self, sample: Tuple[str, List[Annotation]]) -> ViewRecord:
        path, image_annotations = sample
        image = read_rgb(path)
        h, w = image.shape[:2]
        rows = []
        for y_a, x_a, y_b, x_b, relation, width, height in image_annotations:
            ys = np.floor((np.array([y_a, y_b]) - 1) * h / height).clip(0, h - 1)
            xs = np.floor((np.array([x_a, x_b]) - 1) * w / width).clip(0, w - 1)
            rows.append([ys[0], xs[0], ys[1], xs[1], relation])
        pairs = torch.as_tensor(np.asarray(rows, dtype=np.int64), dtype=torch.int64)
        return ViewRecord(image=image_tensor(image), depth_kind="relative", path=path,
                          extras={"ordinal_pairs": pairs})


def read_annotations(path: str) -> List[Tuple[str, Annotation]]:
    """The (image path, annotation) records of a DIW CSV, in file order (module doc)."""
    if not os.path.isfile(path):
        raise ConfigError(f"DIW: annotation file {path!r} not found")
    with open(path) as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, start=1) if line.strip()]
    if len(lines) % 2:
        raise DataFileError(f"DIW: {path} has {len(lines)} non-empty lines, expected pairs of (image path, point pair)")
    records = []
    for (_, image), (number, line) in zip(lines[0::2], lines[1::2]):
        fields = line.split(",")
        try:
            if len(fields) != 7 or fields[4] not in RELATIONS:
                raise ValueError
            y_a, x_a, y_b, x_b, width, height = (int(float(fields[k])) for k in (0, 1, 2, 3, 5, 6))
            if not (1 <= min(x_a, x_b) and max(x_a, x_b) <= width and 1 <= min(y_a, y_b) and max(y_a, y_b) <= height):
                raise ValueError
        except ValueError:
            raise DataFileError(
                f"DIW: {path}:{number}: {line!r}, expected 'y_A,x_A,y_B,x_B,<or>,W,H' with 1-based pixels inside W x H"
            ) from None
        records.append((image, (y_a, x_a, y_b, x_b, RELATIONS[fields[4]], width, height)))
    return records

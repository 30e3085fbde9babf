"""MoGe (Wang et al., CVPR 2025) and MoGe-2: monocular geometry (affine-invariant or metric point maps,
masks, normals, field of view) from one image, trained on datasets in MoGe's layout mixed by weight."""

# Each module registers its classes: MoGeDataset, MoGeBatchBuilder, MoGeSyntheticDatasets,
# MoGeEvaluator, MoGeModel.
from . import batch, builtin_data, dataset, evaluator, model  # noqa: F401

"""Symphonies (Jiang et al., CVPR 2024): semantic scene completion from one image with contextual
instance queries, on NYUv2 and SemanticKITTI (recon_trainer/data/ssc), without mmcv."""

# Each module registers its classes: SSCBatchBuilder, SymphoniesSyntheticRooms, DataDepth / ModelDepth,
# SSCEvaluator, SymphoniesModel.
from . import batch, builtin_data, depth_source, evaluator, model  # noqa: F401

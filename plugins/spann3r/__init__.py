"""Spann3R (Wang & Agapito, 3DV 2025) on its DUSt3R base (Wang et al., CVPR 2024): multi-view point
maps in one coordinate frame, online over a video with a spatial memory (Spann3R) or for a pair
(DUSt3R), trained on DUSt3R-style mixtures of sequence datasets (recon_trainer/data/multiview)."""

# Each module registers its classes: PointMapBatchBuilder, Spann3RSyntheticScenes,
# PointMapEvaluator, Spann3RModel, DUSt3RPairModel.
from . import batch, builtin_data, evaluator, model  # noqa: F401

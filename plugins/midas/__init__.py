"""MiDaS (Ranftl et al., TPAMI 2022) and DPT: monocular relative depth trained on mixed datasets."""

# Each module registers its classes: MidasDepthBatch, MidasSyntheticDatasets, ViTEncoder, ResNetEncoder,
# DepthEvaluator, MidasModel.
from . import batch, builtin_data, dpt_encoder, encoders, evaluator, model  # noqa: F401

"""MiDaS (Ranftl et al., TPAMI 2022) and DPT: monocular relative depth trained on mixed datasets."""

from . import dpt_encoder, encoders, model  # noqa: F401  (register ViTEncoder, ResNetEncoder, MidasModel)

"""NerFormer (Reizenstein et al. 2021, CO3D): a transformer over per-view source features for GenericModel."""

from . import implicit_function  # noqa: F401  (registers NeRFormerImplicitFunction)

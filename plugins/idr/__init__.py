"""IDR (Yariv et al. 2020, Multiview Neural Surface Reconstruction): an SDF feature field and
its sphere-tracing renderer for GenericModel."""

from . import feature_field, renderer  # noqa: F401  (register IdrFeatureField, SignedDistanceFunctionRenderer)

"""NeRF (Mildenhall et al. 2020): the radiance-field implicit function for GenericModel."""

from . import implicit_function  # noqa: F401  (registers NeuralRadianceFieldImplicitFunction)

"""NeRF (Mildenhall et al. 2020): the radiance-field implicit function for GenericModel."""

# implicit_function registers NeuralRadianceFieldImplicitFunction; implicitron_import maps
# Implicitron's checkpoints of it (recon_import_implicitron).
from . import implicit_function, implicitron_import  # noqa: F401

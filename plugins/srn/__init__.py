"""SRN (Sitzmann et al. 2019, Scene Representation Networks): a feature field marched by an LSTM.

The implicit functions (a plain MLP or a hypernetwork-generated one over a global code) give
features at points; `LSTMRenderer` steps every ray's depth from those features and colours the
final point with the pixel generator.
"""

# implicit_function registers SRNImplicitFunction and SRNHyperNetImplicitFunction, lstm_renderer LSTMRenderer.
from . import implicit_function, lstm_renderer  # noqa: F401

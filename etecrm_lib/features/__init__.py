"""Fixed image features for the two-step models: the Gabor wavelet pyramid and CNN layer
activations."""

from .cnn import CNNConfig, CNNFeatures, cnn_features, layer_names, load_cnn
from .gabor import GaborConfig, gabor_features, gabor_layout

__all__ = [
    "GaborConfig",
    "gabor_features",
    "gabor_layout",
    "CNNConfig",
    "CNNFeatures",
    "cnn_features",
    "layer_names",
    "load_cnn",
]

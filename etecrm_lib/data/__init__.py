"""Datasets: the :class:`EncodingDataset` type, the embedded simulated cortex and the real loaders.

>>> from etecrm_lib.data import simulate
>>> ds = simulate(subject=1, profile="quick")     # no download needed
>>> ds.train.stimuli.shape, ds.train.responses["V1"].shape
"""

from .dataset import DEFAULT_ROIS, EncodingDataset, Split, VoxelInfo, check_dataset, from_arrays
from .kay import fetch_kay_images, load_kay_images
from .miyawaki import load_miyawaki
from .npz import load_npz, save_npz
from .registry import DATASETS, load_dataset, open_dataset
from .simulate import simulate
from .vim1 import download_vim1, load_vim1

__all__ = [
    "DEFAULT_ROIS",
    "EncodingDataset",
    "Split",
    "VoxelInfo",
    "check_dataset",
    "from_arrays",
    "load_npz",
    "save_npz",
    "simulate",
    "load_vim1",
    "download_vim1",
    "fetch_kay_images",
    "load_kay_images",
    "load_miyawaki",
    "load_dataset",
    "open_dataset",
    "DATASETS",
]

"""One entry point for every dataset: ``load_dataset("sim" | "vim1" | "miyawaki", ...)``.

This is what the book's parameter cell and the command line call.

=============  ===============================================================================
name           what you get
=============  ===============================================================================
``sim``        the embedded simulated visual cortex (``simulate``), no download
``vim1``       vim-1 (Kay et al. 2008): the CRCNS files from ``root``, else from the folder in
               ``$ETECRM_VIM1_DIR``, else from the cache folder ``download_vim1`` fills by
               default; if none of these is given or has the files, subject 1 from the
               login-free OSF copy (``kay_images.npz``, about 0.2 GB, downloaded once, cached)
``kay``        always the OSF copy of vim-1 subject 1 (``root`` = its cache folder)
``miyawaki``   Miyawaki et al. 2008 through nilearn (about 150 MB, downloaded once)
=============  ===============================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from ..profiles import DEFAULT_PROFILE, check_profile
from ..storage import cache_dir
from .dataset import EncodingDataset
from .kay import load_kay_images
from .miyawaki import load_miyawaki
from .npz import load_npz
from .simulate import simulate
from .vim1 import VIM1_FILES, load_vim1

DATASETS = ("sim", "vim1", "kay", "miyawaki")
VIM1_DIR_ENV = "ETECRM_VIM1_DIR"


@dataclass
class RealDataConfig:
    """Image sizes of the real datasets for a profile (None = as in the files, 128 px for vim-1).

    ``quick`` shrinks images so that CPU runs stay short; the images and voxels are all kept, so
    test scores stay comparable.
    """

    vim1_image_size: int | None = None
    miyawaki_image_size: int = 100

    @classmethod
    def for_profile(cls, profile: str | None = DEFAULT_PROFILE, **changes) -> "RealDataConfig":
        """``"full"``: the files' image sizes; ``"quick"``: smaller images; then ``changes``."""
        if check_profile(profile) == "quick":
            return replace(cls(vim1_image_size=64, miyawaki_image_size=60), **changes)
        return replace(cls(), **changes)


def load_dataset(
    name: str, subject: int = 1, profile: str | None = None, root=None, seed: int = 0, **kwargs
) -> EncodingDataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : "sim", "vim1", "kay" or "miyawaki" (see the module docstring)
    subject : int
        vim-1 has subjects 1 and 2 (subject 2 needs the CRCNS files); Miyawaki has subject 1.
    profile : "quick", "full" or None
        ``sim``: the simulation profile (None = ``"full"``, the vim-1-shaped one). Real data:
        the image size (:class:`RealDataConfig`; None = ``"full"``).
    root : path, optional
        ``vim1``: folder with ``Stimuli.mat`` and ``EstimatedResponses.mat`` (else
        ``$ETECRM_VIM1_DIR``, else the cache folder of ``download_vim1``, else the OSF copy).
        ``kay``: the cache folder of ``kay_images.npz``. ``miyawaki``: nilearn's data folder.
    seed : int
        The simulation's seed (real data are what they are; the seed is not used).
    **kwargs
        Passed on to ``simulate``, ``load_vim1`` / ``load_kay_images`` or ``load_miyawaki``
        (e.g. ``rois=``, ``image_size=``).
    """
    if name == "sim":
        return simulate(subject=subject, profile=profile or "full", seed=seed, **kwargs)
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose from {list(DATASETS)}, or load your own arrays "
            "with etecrm_lib.data.from_arrays"
        )
    config = RealDataConfig.for_profile(profile)
    if name in ("vim1", "kay"):
        kwargs.setdefault("image_size", config.vim1_image_size)
    if name == "vim1":
        root = root or os.environ.get(VIM1_DIR_ENV) or _downloaded_vim1()
        if root is not None:
            return load_vim1(root, subject=subject, **kwargs)
        if subject != 1:
            raise ValueError(
                f"vim-1 subject {subject} is only in the CRCNS files (free account): "
                "download them with "
                "etecrm_lib.data.download_vim1(folder, username, password) and pass root=folder "
                f"(or set ${VIM1_DIR_ENV}). Without them, only subject 1 is available (the "
                "OSF copy)."
            )
        return _load_kay(subject, None, kwargs)
    if name == "kay":
        return _load_kay(subject, root, kwargs)
    if subject != 1:
        raise ValueError(
            f"the Miyawaki data set has one subject (subject=1), got subject={subject}"
        )
    kwargs.setdefault("image_size", config.miyawaki_image_size)
    return load_miyawaki(root, **kwargs)


def open_dataset(
    dataset, subject: int = 1, profile: str | None = None, seed: int | None = None, root=None
) -> EncodingDataset:
    """A dataset given any way the command line and ``reproduce`` accept: a name
    (:func:`load_dataset`), a ``.npz`` file written by ``save_npz``
    (:func:`~etecrm_lib.data.dataset.load_npz`), or an :class:`EncodingDataset` (returned as it is).
    ``seed``: the simulation's (None = 0)."""
    if isinstance(dataset, EncodingDataset):
        return dataset
    if str(dataset).endswith(".npz"):
        return load_npz(dataset)
    return load_dataset(str(dataset), subject=subject, profile=profile, root=root, seed=seed or 0)


def _load_kay(subject: int, cache_dir, kwargs: dict) -> EncodingDataset:
    if subject != 1:
        raise ValueError(f"kay_images.npz holds vim-1 subject 1 only, got subject={subject}")
    if cache_dir is not None:
        kwargs.setdefault("root", cache_dir)
    return load_kay_images(**kwargs)


def _downloaded_vim1():
    """The default folder of ``download_vim1`` if both vim-1 files are there, else None."""
    folder = cache_dir("vim1")
    return folder if all((folder / name).is_file() for name in VIM1_FILES) else None

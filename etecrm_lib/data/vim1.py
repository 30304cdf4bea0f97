"""vim-1 (Kay et al. 2008; Naselaris et al. 2009) from CRCNS: read the MATLAB files, or download
them.

vim-1 needs a free CRCNS account (https://crcns.org/data-sets/vc/vim-1). Two files are used:

- ``Stimuli.mat``: ``stimTrn`` (1750, 128, 128) and ``stimVal`` (120, 128, 128) grayscale images.
  The CRCNS copy is a MATLAB v5 file (``scipy.io.loadmat``); a v7.3 (HDF5) re-save is read too.
- ``EstimatedResponses.mat``: a MATLAB v7.3 (HDF5) file with, for subject ``n`` (1 or 2),
  ``dataTrnS{n}`` (voxels, 1750) and ``dataValS{n}`` (voxels, 120) z-scored response estimates,
  ``roiS{n}`` (voxels,) ROI codes and ``voxIdxS{n}`` (voxels,) 1-based MATLAB linear indices into
  the 64 x 64 x 18 functional volume. A v5 re-save is read too.

MATLAB stores arrays column-major; h5py shows a MATLAB (voxels, images) array as (images, voxels).
:func:`read_mat` undoes that, so every array comes out with the shape MATLAB shows.

Only response estimates per image are distributed, no single trials: ``ds.test.repeats`` is empty
and the noise ceiling cannot be estimated from repeats on vim-1.

CRCNS terms forbid redistribution: never commit these files or anything that reproduces them.

>>> ds = load_vim1("~/data/vim-1", subject=1)             # doctest: +SKIP
>>> ds.train.responses["V1"].shape                         # doctest: +SKIP
(1750, 1294)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..storage import cache_dir
from ..vocabulary import UNSET, renamed
from .dataset import DEFAULT_ROIS, EncodingDataset, Split, VoxelInfo
from .download import DownloadError, download

CRCNS_URL = "https://portal.nersc.gov/project/crcns/download/index.php"
VIM1_FILES = ("Stimuli.mat", "EstimatedResponses.mat")

# roiS{n} codes (0 = voxel outside the named visual areas)
ROI_CODES = {
    1: "V1",
    2: "V2",
    3: "V3",
    4: "V3A",
    5: "V3B",
    6: "V4",
    7: "LO",
}  # 7 is "LatOcc" in vim-1
VOLUME_SHAPE = (64, 64, 18)
VOXEL_SIZE_MM = (2.0, 2.0, 2.5)


# --------------------------------------------------------------------------- reading MATLAB files
def read_mat(path, names) -> dict:
    """Read the variables ``names`` from a MATLAB file (v5 or v7.3), with the shapes MATLAB shows.

    v7.3 files are HDF5 and read with h5py; their axes are reversed back (h5py shows a MATLAB
    (a, b, c) array as (c, b, a)). Older files are read with ``scipy.io.loadmat``.

    Raises
    ------
    FileNotFoundError if the file is missing; ValueError naming the file if it is truncated or
    corrupt, or if a variable is missing (the message lists the variables found).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    import h5py
    import scipy.io

    if _is_web_page(path):
        raise ValueError(
            f"{path} is a web page (HTML), not a MATLAB file: most likely the CRCNS login "
            "page, saved when a "
            "download was not logged in. Delete it and download the file again with your "
            "CRCNS account: "
            "etecrm_lib.data.download_vim1(folder) with CRCNS_USERNAME and CRCNS_PASSWORD set, or "
            "`etecrm data download --dataset vim1 --root folder`"
        )
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                found = [k for k in f.keys() if not k.startswith("#")]
                data = {name: np.asarray(f[name][()]).T for name in names if name in found}
        else:
            found = [name for name, _, _ in scipy.io.whosmat(str(path))]
            data = scipy.io.loadmat(
                str(path), variable_names=[name for name in names if name in found]
            )
    except (
        OSError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        EOFError,
        NotImplementedError,
        scipy.io.matlab.MatReadError,
    ) as err:
        raise ValueError(
            f"could not read {path}: the file is truncated or corrupt ({err}); download it again"
        ) from err
    _check_names(path, names, found)
    return {name: np.asarray(data[name]) for name in names}


def _is_web_page(path) -> bool:
    """True if the file starts like HTML or XML (after a byte-order mark and blank space)."""
    with open(path, "rb") as f:
        head = f.read(1024)
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        if head.startswith(bom):
            head = head[len(bom) :]
            if bom != b"\xef\xbb\xbf":  # UTF-16: drop the zero bytes
                head = head.replace(b"\x00", b"")
            break
    head = head.lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<!--"))


def _check_names(path, names, found) -> None:
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{path} has no variable(s) {missing}; variables found: {sorted(found)}")


# --------------------------------------------------------------------------- images
def rescale_stimuli(train, test):
    """Map images to [0, 1] with one affine map learned from the *train* images.

    If both splits already lie in [0, 1] they are kept as they are. Otherwise
    ``x -> (x - min_train) / (max_train - min_train)``, with test pixels outside the train range
    clipped. Returns ``(train, test, scaling)``; ``scaling`` (a dict: ``source_min``,
    ``source_max``, ``offset``, ``scale``, ``test_pixels_clipped``) goes into ``ds.info`` so that
    nothing is changed silently.
    """
    train = np.asarray(train, dtype=np.float32)
    test = np.asarray(test, dtype=np.float32)
    lo, hi = float(train.min()), float(train.max())
    scaling = {
        "source_min": lo,
        "source_max": hi,
        "source_test_min": float(test.min()),
        "source_test_max": float(test.max()),
    }
    if lo >= 0 and hi <= 1 and test.min() >= 0 and test.max() <= 1:
        scaling.update(offset=0.0, scale=1.0, test_pixels_clipped=0)
        return train, test, scaling
    if hi <= lo:
        raise ValueError(
            f"all training images have the same value {lo}: cannot rescale them to [0, 1]"
        )
    scale = 1.0 / (hi - lo)
    train = (train - lo) * scale
    test = (test - lo) * scale
    clipped = int(((test < 0) | (test > 1)).sum())
    scaling.update(offset=-lo, scale=scale, test_pixels_clipped=clipped)
    return np.clip(train, 0, 1), np.clip(test, 0, 1), scaling


def resize_images(images, size: int | None):
    """Resize ``(N, H, W)`` images to ``(N, size, size)``; no-op if ``size`` is None or already the
    size.

    Shrinking averages the pixels each new pixel covers (``area``: exact block means for integer
    factors, e.g. 128 -> 64), which avoids aliasing; enlarging is bilinear.
    """
    images = np.asarray(images, dtype=np.float32)
    if size is None or images.shape[1:] == (size, size):
        return images
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images)[:, None]
    if size < max(images.shape[1:]):
        out = F.interpolate(x, size=(size, size), mode="area")
    else:
        out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return out[:, 0].clamp_(0, 1).numpy()


def vim1_affine(volume_shape=VOLUME_SHAPE, voxel_size=VOXEL_SIZE_MM) -> np.ndarray:
    """Voxel -> mm affine: ``voxel_size`` spacing, volume centred on 0 (scanner orientation not
    distributed)."""
    affine = np.diag([*voxel_size, 1.0])
    affine[:3, 3] = -(np.asarray(volume_shape) - 1) / 2 * np.asarray(voxel_size)
    return affine


# --------------------------------------------------------------------------- the loader
def load_vim1(
    root, subject: int = 1, image_size: int | None = None, rois=DEFAULT_ROIS
) -> EncodingDataset:
    """Load vim-1 subject ``subject`` from the CRCNS files in the folder ``root``.

    Parameters
    ----------
    root : path
        Folder holding ``Stimuli.mat`` and ``EstimatedResponses.mat`` (see :func:`download_vim1`).
    subject : 1 or 2
    image_size : int, optional
        Resize the images to ``image_size`` x ``image_size``; None keeps them as in the files (128 x
        128).
    rois : sequence of str
        Any of ``"V1", "V2", "V3", "V3A", "V3B", "V4", "LO"`` (``LatOcc`` in vim-1 is called
        ``LO``).

    Returns
    -------
    EncodingDataset named ``"vim1"``: 1750 train and 120 test images, ``float32 (N, size, size)`` in
    [0, 1]; responses ``float32 (N, V_roi)`` (z-scored, as distributed); no test repeats.

    What is done to the data (all recorded in ``ds.info``)
    -----------------------------------------------------
    - Stimuli are rescaled to [0, 1] by the min and max over the *train* images (the numbers are in
      ``ds.info["stimulus_scaling"]``); nothing is assumed about their range in the file. They are
      kept as they are if already in [0, 1].
    - Voxels with any NaN in the train or test responses are dropped (``ds.info["dropped_voxels"]``
      per ROI, ``ds.info["nan_voxels_dropped"]`` in total).
    - ``ds.voxels[roi].volume_index`` is ``voxIdx`` exactly (1-based, MATLAB order, 64 x 64 x 18);
      the affine assumes 2 x 2 x 2.5 mm voxels centred on 0 (the orientation is not distributed).
    """
    root = Path(root).expanduser()
    if subject not in (1, 2):
        raise ValueError(f"vim-1 has subjects 1 and 2, got subject={subject!r}")
    unknown = [r for r in rois if r not in ROI_CODES.values()]
    if unknown or not rois:
        raise ValueError(
            f"unknown vim-1 ROI(s) {unknown or list(rois)}; choose from {list(ROI_CODES.values())}"
        )
    stim_path, resp_path = root / VIM1_FILES[0], root / VIM1_FILES[1]
    for path in (stim_path, resp_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found. vim-1 comes from CRCNS (free account): "
                "https://crcns.org/data-sets/vc/vim-1; "
                "download Stimuli.mat and EstimatedResponses.mat into that folder, e.g. with "
                "etecrm_lib.data.download_vim1(folder, username, password)"
            )

    stim = read_mat(stim_path, ["stimTrn", "stimVal"])
    s = f"S{subject}"
    names = [f"dataTrn{s}", f"dataVal{s}", f"roi{s}", f"voxIdx{s}"]
    resp = read_mat(resp_path, names)
    train_x, test_x = stim["stimTrn"], stim["stimVal"]
    data_trn, data_val = (
        resp[names[0]].T,
        resp[names[1]].T,
    )  # MATLAB (voxels, images) -> (images, voxels)
    roi_code = resp[names[2]].reshape(-1)
    vox_idx = resp[names[3]].reshape(-1)

    if train_x.ndim != 3 or test_x.ndim != 3 or train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(
            f"{stim_path}: stimTrn {train_x.shape} and stimVal {test_x.shape} must be (N, H, W) "
            "images of the same size"
        )
    n_vox = data_trn.shape[1] if data_trn.ndim == 2 else -1
    problems = []
    if data_trn.ndim != 2 or data_trn.shape[0] != train_x.shape[0]:
        problems.append(
            f"{names[0]} is {resp[names[0]].shape} (voxels, images) "
            f"but stimTrn has {train_x.shape[0]} images"
        )
    if data_val.ndim != 2 or data_val.shape != (test_x.shape[0], n_vox):
        problems.append(
            f"{names[1]} is {resp[names[1]].shape} but ({n_vox}, {test_x.shape[0]}) was expected "
            f"({n_vox} voxels as in {names[0]}, {test_x.shape[0]} images as in stimVal)"
        )
    if roi_code.size != n_vox or vox_idx.size != n_vox:
        problems.append(
            f"{names[2]} has {roi_code.size} and {names[3]} {vox_idx.size} entries for "
            f"{n_vox} voxels"
        )
    if problems:
        raise ValueError(f"{resp_path} and {stim_path} do not match: " + "; ".join(problems))

    train_x, test_x, scaling = rescale_stimuli(train_x, test_x)
    train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)

    code_of = {name: code for code, name in ROI_CODES.items()}
    affine = vim1_affine()
    train, test, voxels, n_nan_voxels = {}, {}, {}, 0
    for roi in rois:
        keep = roi_code == code_of[roi]
        if not keep.any():
            raise ValueError(
                f"{resp_path}: no voxel of subject {subject} has ROI code {code_of[roi]} ({roi})"
            )
        train[roi] = data_trn[:, keep].astype(np.float32)
        test[roi] = data_val[:, keep].astype(np.float32)
        voxels[roi] = VoxelInfo(vox_idx[keep].astype(np.int64), VOLUME_SHAPE, affine)
        finite = np.isfinite(train[roi]).all(0) & np.isfinite(test[roi]).all(0)
        n_nan_voxels += int(
            (~finite).sum()
        )  # EncodingDataset drops them (ds.info["dropped_voxels"])

    info = {
        "source": f"CRCNS vim-1 files in {root}",
        "stimulus_scaling": scaling,
        "nan_voxels_dropped": n_nan_voxels,
        "voxel_size_mm": list(VOXEL_SIZE_MM),
        "affine_note": "2 x 2 x 2.5 mm voxels centred on 0; the scanner orientation is not "
        "distributed",
        "noise_ceiling": "unavailable from repeats: vim-1 distributes one response estimate per "
        "image",
    }
    return EncodingDataset(
        "vim1", subject, Split(train_x, train), Split(test_x, test), voxels, info
    )


# --------------------------------------------------------------------------- the downloader
def download_vim1(
    root=None,
    username: str | None = None,
    password: str | None = None,
    files=VIM1_FILES,
    base_url: str = CRCNS_URL,
    overwrite: bool = False,
    progress: bool = True,
    dest=UNSET,
) -> list:
    """Download vim-1 files from CRCNS into the folder ``root``. Returns the list of file paths.

    ``root`` (``dest``: its old name) defaults to the cache folder
    ``etecrm_lib.storage.cache_dir("vim1")``, where ``load_dataset("vim1")`` also looks.

    CRCNS serves a file to a POST of the form ``username``, ``password``, ``fn=vim-1/<file>``,
    ``submit=Login`` to its download page (``base_url``). A wrong login is answered with a web page
    instead of the file, which is reported as an error.

    Credentials come from the arguments, else from the environment variables ``CRCNS_USERNAME`` and
    ``CRCNS_PASSWORD``. The password is only sent to the server: it is never written to disk,
    printed, or kept. On Colab, type it with ``getpass.getpass()`` rather than in the notebook.

    Files already in ``root`` are kept (``overwrite=True`` fetches them again). A cut download
    resumes where it stopped the next time this runs. Each file's size is checked against what the
    server announced, and the file is checked to be a MATLAB file before it takes its final name.
    ``EstimatedResponses.mat`` is about 0.5 GB.
    """
    username = username or os.environ.get("CRCNS_USERNAME")
    password = password or os.environ.get("CRCNS_PASSWORD")
    if not username or not password:
        raise ValueError(
            "vim-1 needs a free CRCNS account (https://crcns.org/register): pass username= "
            "and password= "
            "(e.g. password=getpass.getpass()), or set the environment variables "
            "CRCNS_USERNAME and CRCNS_PASSWORD"
        )
    dest = renamed(root, dest, "dest")
    if dest is None:
        dest = cache_dir("vim1")
    dest = Path(dest).expanduser()
    paths = []
    for name in files:
        path = dest / name
        if path.exists() and not overwrite:
            paths.append(path)
            continue
        download(
            base_url,
            path,
            form={
                "username": username,
                "password": password,
                "fn": f"vim-1/{name}",
                "submit": "Login",
            },
            reject_html=True,
            progress=progress,
            description=name,
        )
        if not _looks_like_mat(path):
            path.unlink()
            raise DownloadError(
                f"{base_url} sent a file for vim-1/{name} that is not a MATLAB file; it "
                "was deleted "
                f"(destination {path}). Check the file name and try again."
            )
        paths.append(path)
    return paths


def _looks_like_mat(path) -> bool:
    """True if the file starts like a MATLAB v5/v7 file or is HDF5 (v7.3)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"MATLAB"):
        return True
    import h5py

    return h5py.is_hdf5(path)

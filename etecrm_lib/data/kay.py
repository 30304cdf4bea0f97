"""Real fMRI with no login: the Neuromatch Academy copy of vim-1 subject 1 (``kay_images.npz``,
OSF).

Neuromatch Academy distributes one vim-1 subject as a single ``.npz`` file of about 0.2 GB at
https://osf.io/ymnjv/download. It holds

=================  =====================  ==================================================
key                shape                  meaning
=================  =====================  ==================================================
``stimuli``        (1750, 128, 128)       training images (grayscale)
``stimuli_test``   (120, 128, 128)        test images
``responses``      (1750, 8428)           z-scored response estimates of 8428 voxels
``responses_test`` (120, 8428)            the same for the test images
``roi``            (8428,)                ROI code of each voxel, an index into ``roi_names``
``roi_names``      (8,)                   ``Other, V1, V2, V3, V3A, V3B, V4, LatOcc``
=================  =====================  ==================================================

The file has no voxel positions in the brain, so each voxel's ``volume_index`` is its column in the
file (along a line), which ``ds.info["voxel_positions"]`` says.

The cache and its check (trust on first use)
--------------------------------------------
OSF publishes no checksum, so the expected SHA-256 cannot be known in advance. The first time the
file is downloaded, its SHA-256 is written next to it (``kay_images.npz.sha256``); every later use
checks the file against that record. A cached file that fails the check, cannot be opened or lacks
a key is downloaded again, never used. Pass ``sha256=`` to pin a hash you trust (for example the one
recorded on another machine): then a file that does not match it is refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..storage import atomic_write, make_folder, sha256_file
from ..storage import cache_dir as default_cache_dir
from ..vocabulary import UNSET, renamed
from .dataset import DEFAULT_ROIS, EncodingDataset, Split, VoxelInfo
from .download import ChecksumError, DownloadError, download
from .vim1 import rescale_stimuli, resize_images

OSF_URL = "https://osf.io/ymnjv/download"
FILE_NAME = "kay_images.npz"
KEYS = ("stimuli", "stimuli_test", "responses", "responses_test", "roi", "roi_names")
ROI_RENAME = {"LatOcc": "LO"}  # the same ROI names as the CRCNS loader


# --------------------------------------------------------------------------- fetching
def fetch_kay_images(
    root=None,
    sha256: str | None = None,
    url: str = OSF_URL,
    progress: bool = True,
    cache_dir=UNSET,
) -> Path:
    """Download ``kay_images.npz`` once into a cache folder and check it on every use. Returns its
    path.

    Parameters
    ----------
    root : path, optional
        Folder for the file (``cache_dir``: its old name). Default:
        ``etecrm_lib.storage.cache_dir("kay")``, i.e. ``$ETECRM_CACHE/kay`` or
        ``~/.cache/etecrm/kay``. On Colab, a folder of a mounted Google Drive keeps the file across
        sessions (e.g. ``"/content/drive/MyDrive/etecrm"``).
    sha256 : str, optional
        The SHA-256 the file must have. Without it, the hash recorded at the first download
        (``kay_images.npz.sha256``) is used; see the module docstring.
    url : str
        Where to download from (the OSF address by default).
    progress : bool
        Show a progress bar while downloading.

    Raises
    ------
    DownloadError
        No connection, HTTP error, or a downloaded file whose SHA-256 differs from ``sha256`` or
        from the recorded hash (the message says which and what to do).
    ValueError
        ``sha256`` or the recorded hash is not 64 hex digits (checked before anything is deleted or
        downloaded; a damaged record is fixed by deleting it).
    OSError
        The folder cannot be created or written to (the message says how to choose another).
    """
    pinned = None
    if sha256:
        pinned = _check_hash(
            sha256, "the sha256 you passed", "pass the 64 hex digits of a SHA-256 you trust"
        )
    root = renamed(root, cache_dir, "cache_dir")
    if root is None:
        folder = default_cache_dir("kay")
    else:
        folder = make_folder(root, "the kay folder (root)", "Pass a root folder you can write to")
    path = folder / FILE_NAME
    sidecar = folder / (FILE_NAME + ".sha256")
    recorded = _read_sidecar(sidecar)  # checked before anything is deleted or downloaded
    expected = pinned or recorded

    if path.exists():
        problem = _check_cached(path, expected)
        if problem is None:
            digest = expected or sha256_file(
                path
            )  # first use of a file put there by hand: record it
            if digest != recorded:
                _write_sidecar(sidecar, digest)
            return path
        warnings.warn(
            f"the cached {path} is not usable ({problem}); downloading it again", stacklevel=2
        )
        path.unlink()

    try:
        download(url, path, sha256=expected, progress=progress, description=FILE_NAME)
    except ChecksumError as err:
        origin = (
            "the sha256 you passed"
            if pinned
            else f"the hash recorded at the first download in {sidecar} (delete that file to "
            "accept the new one)"
        )
        raise ChecksumError(f"{err} The expected hash is {origin}.") from None
    problem = _check_npz(path)
    if problem is not None:
        path.unlink()
        raise DownloadError(
            f"{url} did not send kay_images.npz ({problem}); the file was deleted from {folder}. "
            "Check the url."
        )
    digest = expected or sha256_file(path)
    if digest != recorded:
        _write_sidecar(sidecar, digest)
    return path


def _check_cached(path: Path, expected: str | None) -> str | None:
    """Why the cached file must not be used, or None if it is fine."""
    if expected is not None:
        got = sha256_file(path)
        if got != expected:
            return f"SHA-256 {got} differs from the expected {expected}"
    return _check_npz(path)


def _check_npz(path: Path) -> str | None:
    """None if ``path`` is a readable npz with all the keys of kay_images.npz, else what is
    wrong."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
    except Exception as err:  # any damage; numpy's own text is not relayed (it advises pickle)
        return f"not a readable .npz file ({type(err).__name__})"
    return f"keys {missing} are missing" if missing else None


def _check_hash(value, origin: str, fix: str) -> str:
    """``value`` as 64 lower-case hex digits, or a ValueError naming where it came from and the
    fix."""
    digest = str(value).strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        shown = digest if len(digest) <= 80 else digest[:77] + "..."
        raise ValueError(f"{origin} is not a SHA-256 (64 hex digits): it is {shown!r}; {fix}")
    return digest


def _read_sidecar(sidecar: Path) -> str | None:
    """The hash recorded at the first download, or None if there is no record."""
    if not sidecar.exists():
        return None
    try:
        text = sidecar.read_text(errors="replace").split()
    except OSError as err:
        text = [f"<unreadable: {err}>"]
    return _check_hash(
        text[0] if text else "",
        f"the hash record {sidecar}",
        f"it is damaged. Delete {sidecar} and run again: the cached {FILE_NAME} is then checked "
        "(it must open and hold every key) and its hash recorded anew",
    )


def _write_sidecar(sidecar: Path, digest: str) -> None:
    with atomic_write(sidecar) as tmp:
        tmp.write_text(f"{digest}  {FILE_NAME}\n")


# --------------------------------------------------------------------------- loading
def load_kay_images(
    path=None,
    rois=DEFAULT_ROIS,
    image_size: int | None = None,
    root=None,
    sha256: str | None = None,
    progress: bool = True,
    cache_dir=UNSET,
) -> EncodingDataset:
    """vim-1 subject 1 from ``kay_images.npz`` as an :class:`EncodingDataset` (downloaded if
    needed).

    Parameters
    ----------
    path : path, optional
        A ``kay_images.npz`` you already have. Default: :func:`fetch_kay_images` (download once,
        cache).
    rois : sequence of str
        Any of ``"V1", "V2", "V3", "V3A", "V3B", "V4", "LO"`` (``LatOcc`` in the file is called
        ``LO``).
    image_size : int, optional
        Resize the images to ``image_size`` x ``image_size``; None keeps them as in the file (128 x
        128).
    root, sha256, progress
        Passed to :func:`fetch_kay_images` when ``path`` is not given (``cache_dir``: the old
        name of ``root``).

    Returns
    -------
    EncodingDataset named ``"vim1"``, subject 1: 1750 train / 120 test images ``float32 (N, size,
    size)`` in [0, 1]; responses ``float32 (N, V_roi)``, z-scored as distributed (kept as they
    are); no test repeats. Stimuli are rescaled by the min and max over the train images unless
    already in [0, 1] (``ds.info["stimulus_scaling"]`` has the numbers).
    """
    path = (
        Path(path).expanduser()
        if path is not None
        else fetch_kay_images(renamed(root, cache_dir, "cache_dir"), sha256, progress=progress)
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; call load_kay_images() without a path to download it"
        )
    problem = _check_npz(path)
    if problem is not None:
        raise ValueError(
            f"{path} is not a usable kay_images.npz: {problem}. Delete it and download it again"
        )
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in KEYS}

    train_x, test_x = data["stimuli"], data["stimuli_test"]
    resp, resp_test = data["responses"], data["responses_test"]
    roi_code = data["roi"].reshape(-1).astype(np.int64)
    names = [ROI_RENAME.get(str(n), str(n)) for n in data["roi_names"]]
    n_vox = resp.shape[1] if resp.ndim == 2 else -1
    problems = []
    if train_x.ndim != 3 or test_x.ndim != 3 or train_x.shape[1:] != test_x.shape[1:]:
        problems.append(
            f"stimuli {train_x.shape} and stimuli_test {test_x.shape} must be (N, H, W) of one size"
        )
    if resp.ndim != 2 or resp.shape[0] != train_x.shape[0]:
        problems.append(
            f"responses {resp.shape} must be (images, voxels) with {train_x.shape[0]} images"
        )
    if resp_test.shape != (test_x.shape[0], n_vox):
        problems.append(f"responses_test is {resp_test.shape}, expected {(test_x.shape[0], n_vox)}")
    if roi_code.size != n_vox:
        problems.append(f"roi has {roi_code.size} entries for {n_vox} voxels")
    elif n_vox > 0 and (roi_code.min() < 0 or roi_code.max() >= len(names)):
        problems.append(
            f"roi codes go from {roi_code.min()} to {roi_code.max()} but there are "
            f"{len(names)} roi_names"
        )
    if problems:
        raise ValueError(f"{path} is not a valid kay_images.npz: " + "; ".join(problems))
    available = [n for i, n in enumerate(names) if n != "Other" and (roi_code == i).any()]
    unknown = [r for r in rois if r not in available]
    if unknown or not rois:
        raise ValueError(f"ROI(s) {unknown or list(rois)} not in {path}; available: {available}")

    train_x, test_x, scaling = rescale_stimuli(train_x, test_x)
    train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    train, test, voxels = {}, {}, {}
    for roi in rois:
        columns = np.flatnonzero(roi_code == names.index(roi))
        train[roi] = resp[:, columns].astype(np.float32)
        test[roi] = resp_test[:, columns].astype(np.float32)
        voxels[roi] = VoxelInfo(columns + 1, (n_vox, 1, 1), np.eye(4))
    info = {
        "source": f"Neuromatch Academy copy of vim-1 subject 1 ({path})",
        "stimulus_scaling": scaling,
        "voxel_positions": "unknown: kay_images.npz has no volume indices; volume_index is the "
        "voxel's "
        f"1-based column in the file, along a ({n_vox}, 1, 1) line",
        "noise_ceiling": "unavailable from repeats: vim-1 distributes one response estimate per "
        "image",
    }
    return EncodingDataset("vim1", 1, Split(train_x, train), Split(test_x, test), voxels, info)

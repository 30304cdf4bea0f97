"""Miyawaki et al. 2008 (Neuron 60:915): 10 x 10 binary patterns and V1-V4 responses, through
nilearn.

``nilearn.datasets.fetch_miyawaki2008`` downloads the data once (about 150 MB, no login) into
``<cache>/miyawaki2008`` (the library's cache, ``$ETECRM_CACHE`` or ``~/.cache/etecrm``; or
``root``); offline, one sentence says so. One subject saw

- 20 *random* runs of random 10 x 10 binary patterns (we use them for training), and
- 12 *figure* runs of a few geometric shapes and letters, each shown many times (the test split).

Each run is a 4-D NIfTI file with one volume every 2 s; a CSV file per run gives, for every volume,
the 100 pixels of the pattern on screen (``-1`` during rest). nilearn also gives masks of the visual
areas of each hemisphere (``LHV1d``, ``RHV1v``, ...). We join them into ROIs:

=====  ========================  =====  ==================
ROI    masks (both hemispheres)  ROI    masks
=====  ========================  =====  ==================
V1     V1d + V1v                 V3A    V3A
V2     V2d + V2v                 V4     V4v
V3     V3 (dorsal) + VP
=====  ========================  =====  ==================

Preprocessing (as in nilearn's Miyawaki examples)
-------------------------------------------------
1. Per run and voxel: linear detrending, then z-scoring over the run's volumes
   (``nilearn.signal.clean(detrend=True, standardize="zscore_sample")``, what ``MultiNiftiMasker``
   does to each run).
2. Hemodynamic delay: the response at volume ``t + shift`` is paired with the pattern shown at
   volume ``t`` (``shift = 2`` volumes = 4 s, as nilearn does with ``x[2:]`` and ``y[:-2]``).
3. Rest volumes (label ``-1``) are dropped.
4. ``average_blocks=True`` (default): the volumes of one presentation (a run of consecutive volumes
   with the same pattern) are averaged into one sample, so each sample is one image presentation.
   Test shapes are presented several times: their presentations become ``ds.test.repeats``
   ``(R, N_test, V)`` (R = the smallest number of presentations of any shape), so the noise ceiling
   can be estimated on real data.

Stimuli: pattern pixels are 0 or 1 (1 = a flickering checkerboard patch, 0 = gray), enlarged to
``image_size`` pixels by nearest-neighbour (each pattern pixel becomes a block), so they are
already in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..storage import cache_dir
from ..vocabulary import UNSET, renamed
from .dataset import EncodingDataset, Split, VoxelInfo
from .download import DownloadError

MIYAWAKI_ROIS = {
    "V1": ("V1d", "V1v"),
    "V2": ("V2d", "V2v"),
    "V3": ("V3", "VP"),
    "V3A": ("V3A",),
    "V4": ("V4v",),
}
DEFAULT_MIYAWAKI_ROIS = ("V1", "V2", "V3", "V4")
PATTERN_SHAPE = (10, 10)


def load_miyawaki(
    root=None,
    rois=DEFAULT_MIYAWAKI_ROIS,
    image_size: int = 100,
    shift: int = 2,
    average_blocks: bool = True,
    progress: bool = False,
    data_dir=UNSET,
    verbose=UNSET,
) -> EncodingDataset:
    """Miyawaki et al. 2008 as an :class:`EncodingDataset` (downloaded by nilearn on first use).

    Parameters
    ----------
    root : path, optional
        nilearn's data folder (the files go in ``<root>/miyawaki2008``; ``data_dir``: the old
        name); default: the library's cache (``$ETECRM_CACHE`` or ``~/.cache/etecrm``,
        :func:`storage.cache_dir`).
    rois : sequence of str
        Any of ``"V1", "V2", "V3", "V3A", "V4"``.
    image_size : int
        Side of the stimulus images in pixels (the 10 x 10 patterns are enlarged; 100 gives 10 x 10
        pixel blocks).
    shift : int
        Hemodynamic delay in volumes (2 s each) between a pattern and the response paired with it.
    average_blocks : bool
        Average the volumes of each presentation into one sample (and give test repeats); if False,
        every volume is a sample, as in nilearn's examples.
    progress : bool
        nilearn's progress messages while fetching (``verbose``: the old name, an int).

    Returns
    -------
    EncodingDataset named ``"miyawaki"``, subject 1: train = random-pattern runs, test = figure
    runs; stimuli ``float32 (N, image_size, image_size)`` in {0, 1}; responses ``float32 (N,
    V_roi)`` (detrended and z-scored per run, then averaged per presentation).
    """
    unknown = [r for r in rois if r not in MIYAWAKI_ROIS]
    if unknown or not rois:
        raise ValueError(
            f"unknown Miyawaki ROI(s) {unknown or list(rois)}; choose from {list(MIYAWAKI_ROIS)}"
        )
    if shift < 0:
        raise ValueError(f"shift must be >= 0 volumes, got {shift}")
    from nilearn.datasets import fetch_miyawaki2008

    root = renamed(root, data_dir, "data_dir")
    folder = Path(root if root is not None else cache_dir()).expanduser()
    try:
        verbose = renamed(int(progress), verbose, "verbose", "progress")
        bunch = fetch_miyawaki2008(data_dir=str(folder), verbose=verbose)
    except OSError as err:  # requests' ConnectionError and timeouts are OSErrors too
        raise DownloadError(
            f"Could not download Miyawaki et al. 2008 (nilearn, about 150 MB) into {folder} "
            f"({type(err).__name__}): connect to the internet and try again."
        ) from None
    figure_runs = list(zip(bunch.func[:12], bunch.label[:12]))
    random_runs = list(zip(bunch.func[12:], bunch.label[12:]))
    masks, affine, volume_shape = _roi_masks(bunch.mask_roi, rois)

    train_x, train_y = _load_runs(random_runs, masks, volume_shape, shift, average_blocks, "random")
    test_x, test_y = _load_runs(figure_runs, masks, volume_shape, shift, average_blocks, "figure")

    info = {
        "source": "Miyawaki et al. 2008 via nilearn.datasets.fetch_miyawaki2008 "
        f"({Path(bunch.func[0]).parents[1]})",
        "preprocessing": f"per run: linear detrend and z-score; responses shifted by {shift} "
        "volumes "
        f"({2 * shift} s); rest volumes dropped"
        + ("; volumes of each presentation averaged" if average_blocks else ""),
        "stimulus_scaling": {
            "offset": 0.0,
            "scale": 1.0,
            "note": "binary 10x10 patterns, nearest-neighbour "
            f"enlarged to {image_size}x{image_size}",
        },
    }
    repeats = {}
    if average_blocks:
        test_x, test_y, repeats, n_left_out = _group_repeats(test_x, test_y)
        info["test_presentations_left_out"] = n_left_out
    voxels = {
        roi: VoxelInfo(np.flatnonzero(mask.ravel(order="F")) + 1, volume_shape, affine)
        for roi, mask in masks.items()
    }
    return EncodingDataset(
        "miyawaki",
        1,
        Split(enlarge_patterns(train_x, image_size), train_y),
        Split(enlarge_patterns(test_x, image_size), test_y, repeats),
        voxels,
        info,
    )


def enlarge_patterns(patterns, size: int) -> np.ndarray:
    """``(N, 10, 10)`` patterns -> ``float32 (N, size, size)`` by nearest neighbour (pixel
    blocks)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    rows = np.arange(size) * patterns.shape[1] // size
    cols = np.arange(size) * patterns.shape[2] // size
    return patterns[:, rows][:, :, cols]


def read_labels(path) -> np.ndarray:
    """One run's CSV of patterns -> ``int (T, 10, 10)``; a row of -1 marks rest (nilearn's column
    order)."""
    labels = np.loadtxt(path, dtype=int, delimiter=",", ndmin=2)
    if labels.shape[1] != 100:
        raise ValueError(
            f"{path}: expected 100 comma-separated pattern pixels per line, got {labels.shape[1]}"
        )
    return labels.reshape((-1,) + PATTERN_SHAPE, order="F")


def _roi_masks(mask_files, rois):
    """Boolean masks per ROI (union of the parts over both hemispheres), the affine and volume
    shape."""
    import nibabel as nib

    by_name = {Path(p).name.replace(".nii.gz", ""): p for p in mask_files}
    masks, affine, shape = {}, None, None
    for roi in rois:
        union = None
        for part in MIYAWAKI_ROIS[roi]:
            for hemi in ("LH", "RH"):
                path = by_name.get(hemi + part)
                if path is None:
                    raise ValueError(
                        f"nilearn's Miyawaki masks have no {hemi + part}.nii.gz; found "
                        f"{sorted(by_name)}"
                    )
                img = nib.load(path)
                data = np.asarray(img.dataobj) > 0
                if union is None:
                    union = np.zeros(data.shape, bool)
                    affine, shape = (img.affine, data.shape) if affine is None else (affine, shape)
                if data.shape != shape:
                    raise ValueError(f"{path} has shape {data.shape}, the other masks {shape}")
                union |= data
        if not union.any():
            raise ValueError(f"ROI '{roi}' has no voxel in nilearn's Miyawaki masks")
        masks[roi] = union
    return masks, affine, tuple(int(s) for s in shape)


def _load_runs(runs, masks, volume_shape, shift, average_blocks, kind):
    """Stimulus patterns ``(N, 10, 10)`` and responses ``{roi: (N, V)}`` of all runs of one kind."""
    import nibabel as nib
    from nilearn.signal import clean

    patterns, responses = [], {roi: [] for roi in masks}
    for func_path, label_path in runs:
        data = np.asarray(nib.load(func_path).dataobj, dtype=np.float32)
        labels = read_labels(label_path)
        if data.ndim != 4 or data.shape[:3] != volume_shape or data.shape[3] != labels.shape[0]:
            raise ValueError(
                f"{func_path} has shape {data.shape}, expected {volume_shape} x {labels.shape[0]} "
                f"volumes (one per line of {label_path})"
            )
        n_t = labels.shape[0] - shift
        shown = labels[:n_t]  # pattern shown at volume t ...
        keep = shown[:, 0, 0] != -1  # ... not rest
        starts = _block_starts(shown, keep) if average_blocks else np.flatnonzero(keep)
        block_of = np.cumsum(np.isin(np.arange(n_t), starts)) - 1
        for roi, mask in masks.items():
            voxel_ijk = np.unravel_index(
                np.flatnonzero(mask.ravel(order="F")), volume_shape, order="F"
            )
            signals = clean(
                data[voxel_ijk].T, detrend=True, standardize="zscore_sample", filter=False
            )
            paired = signals[shift:]  # ... paired with the response at volume t + shift
            responses[roi].append(_mean_by_block(paired[keep], block_of[keep], len(starts)))
        patterns.append(shown[starts])
    if not patterns or sum(len(p) for p in patterns) == 0:
        raise ValueError(f"no {kind} stimulus presentation found in the Miyawaki label files")
    return (
        np.concatenate(patterns).astype(np.float32),
        {roi: np.concatenate(r).astype(np.float32) for roi, r in responses.items()},
    )


def _block_starts(shown, keep) -> np.ndarray:
    """Indices of volumes that start a presentation: kept, and not the same pattern as the volume
    before."""
    same_as_before = np.zeros(len(shown), bool)
    same_as_before[1:] = (shown[1:] == shown[:-1]).all(axis=(1, 2)) & keep[:-1]
    return np.flatnonzero(keep & ~same_as_before)


def _mean_by_block(values, block, n_blocks) -> np.ndarray:
    sums = np.zeros((n_blocks, values.shape[1]), np.float64)
    np.add.at(sums, block, values)
    return sums / np.bincount(block, minlength=n_blocks)[:, None]


def _group_repeats(patterns, responses):
    """Group presentations of the same pattern: unique patterns, mean responses, repeats ``(R, N,
    V)``."""
    flat = patterns.reshape(len(patterns), -1)
    unique, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the order of first appearance
    inverse = np.argsort(order)[inverse.reshape(-1)]
    counts = np.bincount(inverse)
    n_rep = int(counts.min())
    picks = [np.flatnonzero(inverse == i)[:n_rep] for i in range(len(order))]  # (N_unique, R)
    repeats = {
        roi: np.stack([r[p] for p in picks], axis=1) for roi, r in responses.items()
    }  # (R, N, V)
    means = {roi: rep.mean(axis=0) for roi, rep in repeats.items()}
    patterns_out = unique[order].reshape((-1,) + patterns.shape[1:])
    left_out = int(counts.sum() - n_rep * len(order))
    return patterns_out, means, (repeats if n_rep >= 2 else {}), left_out

"""Miyawaki et al. 2008 through nilearn: a made-up data set written in nilearn's on-disk layout, so
``fetch_miyawaki2008`` finds it and downloads nothing."""

import numpy as np
import pytest
from _fixtures_real import MIYAWAKI_SHAPE, write_miyawaki

from etecrm_lib.data.miyawaki import enlarge_patterns, load_miyawaki


@pytest.fixture(scope="module")
def miyawaki_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nilearn_data")
    truth = write_miyawaki(root)
    return root, truth


def _voxel_order(ds, roi):
    """(i, j, k) of each voxel of the ROI, in the dataset's order."""
    return tuple(ds.voxels[roi].coords.T)


def test_splits_sizes_and_stimuli(miyawaki_dir):
    root, truth = miyawaki_dir
    ds = load_miyawaki(root, image_size=20)
    assert ds.name == "miyawaki" and ds.rois == ["V1", "V2", "V3", "V4"]
    assert ds.train.stimuli.shape == (20 * 3, 20, 20)  # 20 random runs x 3 presentations
    assert ds.test.stimuli.shape == (4, 20, 20)  # 4 figure shapes
    assert set(np.unique(ds.train.stimuli)) <= {0.0, 1.0}
    # the test images are the four shapes, enlarged in blocks of 2 x 2 pixels, in order of
    # appearance
    np.testing.assert_array_equal(
        ds.test.stimuli, enlarge_patterns(truth["shapes"][[0, 1, 2, 3]], 20)
    )
    # each shape is presented 18 times (3 per run, in 6 runs): repeats (R, N_test, V), mean =
    # responses
    assert ds.test.repeats["V1"].shape == (18, 4, ds.n_voxels("V1"))
    np.testing.assert_allclose(ds.test.responses["V1"], ds.test.repeats["V1"].mean(0), atol=1e-6)
    assert ds.info["test_presentations_left_out"] == 0


def test_roi_voxels_are_the_union_of_both_hemispheres_and_parts(miyawaki_dir):
    root, truth = miyawaki_dir
    ds = load_miyawaki(root, rois=("V1", "V3", "V3A"))
    for roi, parts in {"V1": {"V1d", "V1v"}, "V3": {"V3", "VP"}, "V3A": {"V3A"}}.items():
        expected = np.isin(truth["area"], list(parts))
        got = np.zeros(MIYAWAKI_SHAPE, bool)
        got[_voxel_order(ds, roi)] = True
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(ds.voxels["V1"].affine, np.diag([3.0, 3.0, 3.0, 1.0]))


def test_the_hemodynamic_shift_pairs_each_voxel_with_its_pixel(miyawaki_dir):
    # every made-up voxel follows one pattern pixel 2 volumes late: with shift=2 each voxel's
    # responses match its pixel over the training presentations; without the shift they do not
    root, truth = miyawaki_dir
    ds = load_miyawaki(root, image_size=10, rois=("V2",))
    ds0 = load_miyawaki(root, image_size=10, rois=("V2",), shift=0)

    def pixel_r(d):
        pix = truth["pixel"][_voxel_order(d, "V2")]
        x = d.train.stimuli.reshape(len(d.train.stimuli), -1, order="F")[:, pix]
        y = d.train.responses["V2"]
        xc, yc = x - x.mean(0), y - y.mean(0)
        return (xc * yc).sum(0) / np.sqrt((xc**2).sum(0) * (yc**2).sum(0))

    assert pixel_r(ds).min() > 0.75  # below 1: per-run z-scoring and detrending reshape the blocks
    assert pixel_r(ds0).max() < 0.5


def test_preprocessing_matches_nilearns_masker(miyawaki_dir):
    # cross-check: per-volume samples (average_blocks=False) equal nilearn's MultiNiftiMasker with
    # detrending and z-scoring per run, shifted and stripped of rest as in nilearn's example
    import nibabel as nib
    from nilearn.datasets import fetch_miyawaki2008
    from nilearn.maskers import MultiNiftiMasker

    root, truth = miyawaki_dir
    ds = load_miyawaki(root, rois=("V4",), average_blocks=False, image_size=10)
    bunch = fetch_miyawaki2008(data_dir=str(root), verbose=0)
    v4 = truth["area"] == "V4v"
    mask = nib.Nifti1Image(v4.astype(np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))
    masker = MultiNiftiMasker(mask_img=mask, detrend=True, standardize="zscore_sample").fit()
    x = masker.transform(bunch.func[12:])
    y = [np.loadtxt(f, dtype=int, delimiter=",") for f in bunch.label[12:]]
    x = np.vstack([a[2:] for a in x])
    y = np.vstack([b[:-2] for b in y])
    x = x[y[:, 0] != -1]
    # nilearn orders voxels in C order; ours follow MATLAB (F) order
    ours_in_c_order = np.argsort(np.ravel_multi_index(_voxel_order(ds, "V4"), MIYAWAKI_SHAPE))
    np.testing.assert_allclose(ds.train.responses["V4"][:, ours_in_c_order], x, atol=1e-4)
    assert ds.test.repeats == {}


def test_bad_arguments(miyawaki_dir):
    root, _ = miyawaki_dir
    with pytest.raises(ValueError, match="choose from"):
        load_miyawaki(root, rois=("V1", "LO"))
    with pytest.raises(ValueError, match="shift"):
        load_miyawaki(root, shift=-1)


def test_load_dataset_dispatches_to_miyawaki_with_the_profile_image_size(miyawaki_dir):
    from etecrm_lib.data import load_dataset

    root, _ = miyawaki_dir
    ds = load_dataset("miyawaki", root=root, profile="quick", rois=("V1",))
    assert ds.name == "miyawaki" and ds.image_size == 60 and ds.rois == ["V1"]
    assert load_dataset("miyawaki", root=root, rois=("V1",)).image_size == 100


def test_the_cache_is_the_default_folder_and_offline_is_one_sentence(monkeypatch, tmp_path):
    import nilearn.datasets
    import requests

    from etecrm_lib.data.download import DownloadError

    asked = []

    def offline(data_dir=None, verbose=0):
        asked.append(data_dir)
        raise requests.ConnectionError("Max retries exceeded with url: ... (a long urllib3 story)")

    monkeypatch.setattr(nilearn.datasets, "fetch_miyawaki2008", offline)
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError) as caught:
        load_miyawaki()
    assert asked == [str(tmp_path / "cache")]
    message = str(caught.value)
    assert "connect to the internet" in message and "ConnectionError" in message
    assert "\n" not in message and "urllib3" not in message and caught.value.__cause__ is None

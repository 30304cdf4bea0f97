"""vim-1 from the CRCNS files: made-up files in the real MATLAB formats (v5 and v7.3/HDF5), and the
CRCNS download protocol against a local server on 127.0.0.1."""

import numpy as np
import pytest
from _fixtures_real import FileServer, make_vim1_arrays, savemat_v5, savemat_v73

from etecrm_lib.data.download import DownloadError
from etecrm_lib.data.vim1 import ROI_CODES, download_vim1, load_vim1, read_mat

STIM_KEYS = ("stimTrn", "stimVal")


def _write(root, arrays, stim_format="v5", resp_format="v73"):
    root.mkdir(parents=True, exist_ok=True)
    writers = {"v5": savemat_v5, "v73": savemat_v73}
    writers[stim_format](root / "Stimuli.mat", {k: arrays[k] for k in STIM_KEYS})
    writers[resp_format](
        root / "EstimatedResponses.mat", {k: v for k, v in arrays.items() if k not in STIM_KEYS}
    )
    return root


def test_v73_fixture_looks_like_matlab_output(tmp_path):
    import h5py

    arrays = make_vim1_arrays()
    savemat_v73(tmp_path / "r.mat", {"dataTrnS1": arrays["dataTrnS1"]})
    assert (tmp_path / "r.mat").read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(
        tmp_path / "r.mat", "r"
    ) as f:  # h5py shows MATLAB (voxels, images) as (images, voxels)
        assert (
            f["dataTrnS1"].shape == (20, 30) and f["dataTrnS1"].attrs["MATLAB_class"] == b"single"
        )
    np.testing.assert_array_equal(
        read_mat(tmp_path / "r.mat", ["dataTrnS1"])["dataTrnS1"], arrays["dataTrnS1"]
    )


def test_loads_the_real_combination_v5_stimuli_and_v73_responses(tmp_path):
    arrays = make_vim1_arrays(subjects=(1, 2))
    ds = load_vim1(_write(tmp_path, arrays), subject=2, rois=("V1", "V3B", "LO"))
    roi = arrays["roiS2"].ravel()
    assert ds.name == "vim1" and ds.subject == 2 and ds.rois == ["V1", "V3B", "LO"]
    for name, code in [("V1", 1), ("V3B", 5), ("LO", 7)]:
        keep = roi == code
        np.testing.assert_array_equal(ds.train.responses[name], arrays["dataTrnS2"][keep].T)
        np.testing.assert_array_equal(ds.test.responses[name], arrays["dataValS2"][keep].T)
        np.testing.assert_array_equal(
            ds.voxels[name].volume_index, arrays["voxIdxS2"].ravel()[keep]
        )
        assert ds.voxels[name].volume_shape == (64, 64, 18)
    assert ds.test.repeats == {}
    lo, hi = arrays["stimTrn"].min(), arrays["stimTrn"].max()
    np.testing.assert_allclose(ds.train.stimuli, (arrays["stimTrn"] - lo) / (hi - lo), atol=1e-6)
    np.testing.assert_allclose(ds.test.stimuli, (arrays["stimVal"] - lo) / (hi - lo), atol=1e-6)
    assert ds.info["stimulus_scaling"]["source_min"] == pytest.approx(lo)
    assert ds.info["nan_voxels_dropped"] == 0
    # affine: 2 x 2 x 2.5 mm voxels
    np.testing.assert_allclose(np.diag(ds.voxels["V1"].affine)[:3], [2, 2, 2.5])


def test_every_format_combination_gives_the_same_dataset(tmp_path):
    arrays = make_vim1_arrays()
    reference = load_vim1(_write(tmp_path / "a", arrays, "v5", "v73"), image_size=8)
    for stim_format, resp_format in [("v73", "v5"), ("v73", "v73"), ("v5", "v5")]:
        ds = load_vim1(
            _write(tmp_path / f"{stim_format}{resp_format}", arrays, stim_format, resp_format),
            image_size=8,
        )
        np.testing.assert_array_equal(ds.train.stimuli, reference.train.stimuli)
        np.testing.assert_array_equal(ds.test.stimuli, reference.test.stimuli)
        for roi in reference.rois:
            np.testing.assert_array_equal(ds.train.responses[roi], reference.train.responses[roi])
            np.testing.assert_array_equal(
                ds.voxels[roi].volume_index, reference.voxels[roi].volume_index
            )
    assert reference.train.stimuli.shape == (20, 8, 8)
    assert reference.rois == ["V1", "V2", "V3", "V4", "LO"]


def test_v73_axes_are_reversed_back_not_just_reshaped(tmp_path):
    arrays = make_vim1_arrays(n_train=5, n_test=3, size=4)
    arrays["stimTrn"][:] = 0
    arrays["stimTrn"][0, 0, 3] = 1  # a bright pixel in row 0, column 3 of image 0
    arrays["stimTrn"][1] = 0.5
    ds = load_vim1(_write(tmp_path, arrays, "v73", "v73"))
    assert ds.train.stimuli[0, 0, 3] == 1 and ds.train.stimuli[0].sum() == 1
    assert np.all(ds.train.stimuli[1] == 0.5)


def test_nan_voxels_are_dropped_and_counted(tmp_path):
    arrays = make_vim1_arrays()
    roi = arrays["roiS1"].ravel()
    v1, v2 = np.flatnonzero(roi == 1), np.flatnonzero(roi == 2)
    arrays["dataTrnS1"][v1[0], 4] = np.nan
    arrays["dataValS1"][v2[1], 0] = np.nan
    with pytest.warns(UserWarning, match="dropped 1 of"):
        ds = load_vim1(_write(tmp_path, arrays))
    assert ds.info["dropped_voxels"] == {"V1": 1, "V2": 1} and ds.info["nan_voxels_dropped"] == 2
    assert ds.n_voxels("V1") == v1.size - 1
    np.testing.assert_array_equal(ds.voxels["V1"].volume_index, arrays["voxIdxS1"].ravel()[v1[1:]])
    assert (
        np.isfinite(ds.train.responses["V2"]).all() and np.isfinite(ds.test.responses["V2"]).all()
    )


def test_missing_and_damaged_files_are_named(tmp_path):
    arrays = make_vim1_arrays()
    with pytest.raises(FileNotFoundError, match="Stimuli.mat not found.*crcns.org"):
        load_vim1(tmp_path)
    root = _write(tmp_path / "d", arrays)
    for name in ("EstimatedResponses.mat", "Stimuli.mat"):
        path = root / name
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])
        with pytest.raises(
            ValueError, match=f"could not read {path}: the file is truncated or corrupt"
        ):
            load_vim1(root)
        path.write_bytes(good)
    (root / "Stimuli.mat").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_vim1(root)


def test_wrong_variables_and_shapes_are_explained(tmp_path):
    arrays = make_vim1_arrays()
    renamed = {("stimTrain" if k == "stimTrn" else k): v for k, v in arrays.items()}
    root = tmp_path / "a"
    root.mkdir()
    savemat_v5(
        root / "Stimuli.mat", {"stimTrain": renamed["stimTrain"], "stimVal": arrays["stimVal"]}
    )
    savemat_v73(
        root / "EstimatedResponses.mat", {k: v for k, v in arrays.items() if k not in STIM_KEYS}
    )
    found = r"no variable\(s\) \['stimTrn'\]; variables found: \['stimTrain', 'stimVal'\]"
    with pytest.raises(ValueError, match=found):
        load_vim1(root)
    with pytest.raises(
        ValueError, match=r"no variable\(s\) \['dataTrnS2', 'dataValS2', 'roiS2', 'voxIdxS2'\]"
    ):
        load_vim1(_write(tmp_path / "b", arrays), subject=2)
    bad = dict(arrays, dataValS1=arrays["dataValS1"][:, :-1])
    with pytest.raises(ValueError, match=r"do not match: dataValS1 is \(30, 5\)"):
        load_vim1(_write(tmp_path / "c", bad))
    bad = dict(arrays, roiS1=arrays["roiS1"][:-1])
    with pytest.raises(ValueError, match="roiS1 has 29"):
        load_vim1(_write(tmp_path / "d", bad))
    with pytest.raises(ValueError, match="subjects 1 and 2"):
        load_vim1(tmp_path / "b", subject=3)
    with pytest.raises(ValueError, match="choose from"):
        load_vim1(tmp_path / "b", rois=("V1", "MT"))


def test_download_follows_the_crcns_protocol_and_keeps_no_password(tmp_path, monkeypatch):
    arrays = make_vim1_arrays()
    src = _write(tmp_path / "server", arrays)
    files = {
        f"/vim-1/{n}": (src / n).read_bytes() for n in ("Stimuli.mat", "EstimatedResponses.mat")
    }
    password = "pa55-word-xyz"
    with FileServer(files, crcns=("student", password)) as srv:
        monkeypatch.setenv("CRCNS_USERNAME", "student")
        monkeypatch.setenv("CRCNS_PASSWORD", password)
        srv.cut_next = 1  # the first file is cut half way and resumed
        paths = download_vim1(tmp_path / "vim1", base_url=f"{srv.url}/index.php", progress=False)
        assert [p.name for p in paths] == ["Stimuli.mat", "EstimatedResponses.mat"]
        forms = [r["form"] for r in srv.requests]
        assert [f["fn"] for f in forms] == [
            "vim-1/Stimuli.mat",
            "vim-1/Stimuli.mat",
            "vim-1/EstimatedResponses.mat",
        ]
        assert all(f["username"] == "student" and f["submit"] == "Login" for f in forms)
        assert srv.requests[1]["range"] is not None
        # files already there are not downloaded again
        download_vim1(tmp_path / "vim1", base_url=f"{srv.url}/index.php", progress=False)
        assert len(srv.requests) == 3
        # a wrong login (answered by a web page) is an error that does not show the password
        with pytest.raises(DownloadError, match="wrong username/password") as err:
            download_vim1(
                tmp_path / "other",
                "student",
                "not-it",
                base_url=f"{srv.url}/index.php",
                progress=False,
            )
        assert "not-it" not in str(err.value) and not list((tmp_path / "other").glob("*.mat"))
    ds = load_vim1(tmp_path / "vim1")
    assert ds.n_voxels("V1") == int((arrays["roiS1"] == 1).sum())
    for path in (tmp_path / "vim1").iterdir():
        assert password.encode() not in path.read_bytes()


def test_download_needs_credentials_and_rejects_non_mat_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CRCNS_USERNAME", raising=False)
    monkeypatch.delenv("CRCNS_PASSWORD", raising=False)
    with pytest.raises(ValueError, match="CRCNS_USERNAME and CRCNS_PASSWORD"):
        download_vim1(tmp_path, username="someone")
    with FileServer({"/vim-1/Stimuli.mat": b"<not a mat file>"}, crcns=("u", "p")) as srv:
        with pytest.raises(DownloadError, match="not a MATLAB file"):
            download_vim1(
                tmp_path,
                "u",
                "p",
                files=("Stimuli.mat",),
                base_url=f"{srv.url}/index.php",
                progress=False,
            )
    assert not (tmp_path / "Stimuli.mat").exists()


def test_roi_codes_match_the_paper():
    assert ROI_CODES == {1: "V1", 2: "V2", 3: "V3", 4: "V3A", 5: "V3B", 6: "V4", 7: "LO"}


LOGIN_PAGE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head><title>CRCNS.org - Login</title></head>\n<body>\n'
    '<form action="index.php" method="post">Username: <input name="username"> Password: '
    '<input type="password" name="password"></form>\n</body>\n</html>\n'
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_a_login_page_saved_as_a_mat_file_is_named_as_such(tmp_path, encoding):
    root = _write(tmp_path / "d", make_vim1_arrays())
    (root / "Stimuli.mat").write_bytes(("\n  " + LOGIN_PAGE).encode(encoding))
    with pytest.raises(
        ValueError,
        match=r"Stimuli.mat is a web page \(HTML\), not a MATLAB file: most likely the "
        r"CRCNS login page.*download_vim1",
    ):
        load_vim1(root)

"""kay_images.npz (the login-free OSF copy of vim-1 S1): fetch, cache check, and loading.

The server is local (127.0.0.1) and the file is made up, with the real keys and tiny shapes.
"""

import hashlib

import numpy as np
import pytest
from _fixtures_real import FileServer, closed_port_url, kay_npz_bytes, make_kay_arrays

from etecrm_lib.data.download import ChecksumError, DownloadError
from etecrm_lib.data.kay import fetch_kay_images, load_kay_images

ARRAYS = make_kay_arrays()
BODY = kay_npz_bytes(ARRAYS)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    with FileServer({"/ymnjv/download": BODY}) as srv:
        srv.file_url = f"{srv.url}/ymnjv/download"
        yield srv


def test_fresh_download_records_the_hash_and_later_uses_do_not_download(server, tmp_path):
    path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    assert path == tmp_path / "kay_images.npz" and path.read_bytes() == BODY
    assert (tmp_path / "kay_images.npz.sha256").read_text().split()[0] == SHA
    assert fetch_kay_images(tmp_path, url=server.file_url, progress=False) == path
    assert len(server.requests) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kay_images.npz", "kay_images.npz.sha256"]


def test_default_folder_follows_ETECRM_CACHE(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    path = fetch_kay_images(url=server.file_url, progress=False)
    assert path == tmp_path / "cache" / "kay" / "kay_images.npz"


def test_cut_connection_is_resumed(server, tmp_path):
    server.cut_next = 1
    path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    assert path.read_bytes() == BODY
    assert server.requests[1]["range"] == f"bytes={len(BODY) // 2}-"


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "truncate_without_record"])
def test_corrupt_cache_is_detected_and_fetched_again(server, tmp_path, damage):
    path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    data = bytearray(BODY)
    if damage == "flip_a_byte":
        data[len(data) // 2] ^= 0xFF  # still a readable size, only the hash tells
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))
    if damage == "truncate_without_record":
        (tmp_path / "kay_images.npz.sha256").unlink()
    with pytest.warns(UserWarning, match="not usable"):
        path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    assert path.read_bytes() == BODY and len(server.requests) == 2
    assert (tmp_path / "kay_images.npz.sha256").read_text().split()[0] == SHA


def test_file_missing_keys_is_not_used(tmp_path):
    bad = {k: v for k, v in ARRAYS.items() if k != "roi_names"}
    with FileServer({"/f": kay_npz_bytes(bad)}) as srv:
        with pytest.raises(DownloadError, match=r"keys \['roi_names'\] are missing"):
            fetch_kay_images(tmp_path, url=f"{srv.url}/f", progress=False)
    assert not (tmp_path / "kay_images.npz").exists()


def test_pinned_hash_mismatch_is_refused(server, tmp_path):
    with pytest.raises(ChecksumError, match="the sha256 you passed") as err:
        fetch_kay_images(tmp_path, sha256="ab" * 32, url=server.file_url, progress=False)
    assert server.file_url in str(err.value) and SHA in str(err.value)
    assert not (tmp_path / "kay_images.npz").exists()
    # the right pin is accepted and recorded
    assert (
        fetch_kay_images(tmp_path, sha256=SHA, url=server.file_url, progress=False).read_bytes()
        == BODY
    )


def test_changed_file_on_the_server_is_refused_against_the_recorded_hash(tmp_path):
    (tmp_path / "kay_images.npz.sha256").write_text(f"{'cd' * 32}  kay_images.npz\n")
    with FileServer({"/f": BODY}) as srv:
        with pytest.raises(ChecksumError, match="delete that file to accept the new one"):
            fetch_kay_images(tmp_path, url=f"{srv.url}/f", progress=False)


def test_server_down_names_the_url_and_the_cache_path(tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError, match="could not reach") as err:
        fetch_kay_images(tmp_path, url=url, progress=False)
    assert url in str(err.value) and str(tmp_path / "kay_images.npz") in str(err.value)


def test_loaded_dataset_matches_the_file(server, tmp_path):
    fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    ds = load_kay_images(root=tmp_path, rois=("V1", "V3A", "LO"), progress=False)
    with pytest.warns(DeprecationWarning, match="cache_dir is deprecated.*use root"):
        old = load_kay_images(cache_dir=tmp_path, rois=("V1",), progress=False)
    np.testing.assert_array_equal(old.train.responses["V1"], ds.train.responses["V1"])
    roi, names = ARRAYS["roi"], list(ARRAYS["roi_names"])
    assert ds.name == "vim1" and ds.subject == 1 and ds.rois == ["V1", "V3A", "LO"]
    assert ds.train.stimuli.shape == (20, 16, 16) and ds.test.stimuli.shape == (6, 16, 16)
    for ours, theirs in [("V1", "V1"), ("V3A", "V3A"), ("LO", "LatOcc")]:
        cols = np.flatnonzero(roi == names.index(theirs))
        np.testing.assert_array_equal(ds.train.responses[ours], ARRAYS["responses"][:, cols])
        np.testing.assert_array_equal(ds.test.responses[ours], ARRAYS["responses_test"][:, cols])
        np.testing.assert_array_equal(ds.voxels[ours].volume_index, cols + 1)
    assert ds.test.repeats == {}
    lo, hi = ARRAYS["stimuli"].min(), ARRAYS["stimuli"].max()
    np.testing.assert_allclose(ds.train.stimuli, (ARRAYS["stimuli"] - lo) / (hi - lo), atol=1e-6)
    np.testing.assert_allclose(
        ds.test.stimuli, np.clip((ARRAYS["stimuli_test"] - lo) / (hi - lo), 0, 1), atol=1e-6
    )
    scaling = ds.info["stimulus_scaling"]
    assert scaling["source_min"] == pytest.approx(lo) and scaling["source_max"] == pytest.approx(hi)
    assert "no volume indices" in ds.info["voxel_positions"]


def test_default_rois_and_resizing(tmp_path):
    np.savez(tmp_path / "k.npz", **ARRAYS)
    ds = load_kay_images(tmp_path / "k.npz", image_size=8)
    assert ds.rois == ["V1", "V2", "V3", "V4", "LO"]
    assert [ds.n_voxels(r) for r in ds.rois] == [5, 6, 4, 5, 4]
    assert ds.train.stimuli.shape == (20, 8, 8)
    # shrinking by 2 gives the means of 2x2 blocks
    full = load_kay_images(tmp_path / "k.npz").train.stimuli
    np.testing.assert_allclose(
        ds.train.stimuli, full.reshape(20, 8, 2, 8, 2).mean(axis=(2, 4)), atol=1e-6
    )
    assert 0 <= ds.train.stimuli.min() and ds.train.stimuli.max() <= 1


def test_stimuli_already_in_unit_range_are_kept(tmp_path):
    arrays = dict(
        ARRAYS, stimuli=(ARRAYS["stimuli"] + 0.4), stimuli_test=(ARRAYS["stimuli_test"] + 0.4)
    )
    np.savez(tmp_path / "k.npz", **arrays)
    ds = load_kay_images(tmp_path / "k.npz")
    np.testing.assert_allclose(ds.train.stimuli, arrays["stimuli"], atol=1e-6)
    assert ds.info["stimulus_scaling"]["scale"] == 1.0


def test_bad_files_and_rois_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="without a path"):
        load_kay_images(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a usable kay_images.npz"):
        load_kay_images(tmp_path / "junk.npz")
    np.savez(
        tmp_path / "shape.npz", **dict(ARRAYS, responses_test=ARRAYS["responses_test"][:, :-1])
    )
    with pytest.raises(ValueError, match="responses_test is"):
        load_kay_images(tmp_path / "shape.npz")
    np.savez(tmp_path / "k.npz", **ARRAYS)
    with pytest.raises(
        ValueError, match=r"available: \['V1', 'V2', 'V3', 'V3A', 'V3B', 'V4', 'LO'\]"
    ):
        load_kay_images(tmp_path / "k.npz", rois=("V1", "FFA"))


@pytest.mark.parametrize("garbage", ["not-a-hash", "", "zz" * 32, "\x00\xff garbage"])
def test_a_damaged_hash_record_says_to_delete_it_and_keeps_the_file(server, tmp_path, garbage):
    path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    sidecar = tmp_path / "kay_images.npz.sha256"
    sidecar.write_text(garbage)
    with pytest.raises(
        ValueError,
        match=rf"the hash record {sidecar} is not a SHA-256 \(64 hex digits\).*it is "
        rf"damaged\. Delete {sidecar} and run again",
    ):
        fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    assert (
        path.read_bytes() == BODY and len(server.requests) == 1
    )  # nothing deleted, nothing downloaded
    sidecar.unlink()  # the fix the message gives
    assert fetch_kay_images(tmp_path, url=server.file_url, progress=False) == path
    assert sidecar.read_text().split()[0] == SHA and len(server.requests) == 1


def test_a_malformed_pinned_hash_is_refused_before_the_cached_file_is_touched(server, tmp_path):
    path = fetch_kay_images(tmp_path, url=server.file_url, progress=False)
    with pytest.raises(ValueError, match="the sha256 you passed is not a SHA-256 .* 'abc'"):
        fetch_kay_images(tmp_path, sha256="abc", url=server.file_url, progress=False)
    assert path.read_bytes() == BODY and len(server.requests) == 1


def test_a_cache_folder_that_is_a_file_is_explained(server, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(
        NotADirectoryError,
        match=r"cannot use the kay folder \(root\) .*afile is a file, "
        r"not a folder\. Pass a root folder you can write to",
    ):
        fetch_kay_images(tmp_path / "afile", url=server.file_url, progress=False)

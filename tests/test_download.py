"""The HTTP downloader, against a local server on 127.0.0.1: fresh, resumed, verified, failing
clearly."""

import hashlib

import pytest
from _fixtures_real import FileServer, closed_port_url

from etecrm_lib.data.download import ChecksumError, DownloadError, download

BODY = bytes(range(256)) * 400  # 100 kB of known bytes


def test_fresh_download_is_complete_and_leaves_no_partial_file(tmp_path):
    with FileServer({"/f.bin": BODY}) as srv:
        path = download(
            f"{srv.url}/f.bin",
            tmp_path / "sub" / "f.bin",
            expected_size=len(BODY),
            sha256=hashlib.sha256(BODY).hexdigest().upper(),
            progress=False,
        )
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]


def test_cut_connection_is_resumed_with_a_range_request(tmp_path):
    with FileServer({"/f.bin": BODY}) as srv:
        srv.cut_next = 1  # the first response stops half way and closes the connection
        path = download(f"{srv.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert path.read_bytes() == BODY
    assert [r["range"] for r in srv.requests] == [None, f"bytes={len(BODY) // 2}-"]


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY[:1000])
    with FileServer({"/f.bin": BODY}) as srv:
        download(f"{srv.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert srv.requests[0]["range"] == "bytes=1000-"


def test_complete_partial_file_is_finished_without_a_new_body(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY)
    with FileServer({"/f.bin": BODY}) as srv:
        download(f"{srv.url}/f.bin", tmp_path / "f.bin", expected_size=len(BODY), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == BODY and not (tmp_path / "f.bin.part").exists()


def test_connection_that_keeps_breaking_gives_up_and_keeps_the_partial_file(tmp_path):
    with FileServer({"/f.bin": BODY}) as srv:
        srv.cut_next = 10
        with pytest.raises(DownloadError, match="broke 3 times") as err:
            download(f"{srv.url}/f.bin", tmp_path / "f.bin", retries=2, progress=False)
    assert str(tmp_path / "f.bin.part") in str(err.value)
    assert 0 < (tmp_path / "f.bin.part").stat().st_size < len(BODY)
    assert not (tmp_path / "f.bin").exists()


def test_hash_mismatch_is_refused_and_nothing_is_kept(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old, good file")
    with FileServer({"/f.bin": BODY}) as srv:
        with pytest.raises(ChecksumError, match="SHA-256 mismatch") as err:
            download(f"{srv.url}/f.bin", dest, sha256="0" * 64, progress=False)
    assert f"{srv.url}/f.bin" in str(err.value) and hashlib.sha256(BODY).hexdigest() in str(
        err.value
    )
    assert dest.read_bytes() == b"old, good file"  # the existing file is untouched
    assert not (tmp_path / "f.bin.part").exists()


def test_size_mismatch_is_refused(tmp_path):
    with FileServer({"/f.bin": BODY}) as srv:
        with pytest.raises(DownloadError, match=f"expected {len(BODY) + 1} bytes"):
            download(
                f"{srv.url}/f.bin", tmp_path / "f.bin", expected_size=len(BODY) + 1, progress=False
            )
    assert list(tmp_path.iterdir()) == []


def test_404_and_server_down_name_the_url_and_the_destination(tmp_path):
    with FileServer({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404") as err:
            download(f"{srv.url}/missing.bin", tmp_path / "m.bin", progress=False)
    assert f"{srv.url}/missing.bin" in str(err.value) and str(tmp_path / "m.bin") in str(err.value)
    url = closed_port_url()
    with pytest.raises(DownloadError, match="could not reach") as err:
        download(url, tmp_path / "m.bin", progress=False, timeout=5)
    assert url in str(err.value) and str(tmp_path / "m.bin") in str(err.value)


def test_form_fields_are_posted_but_never_shown(tmp_path):
    with FileServer({"/vim-1/a.mat": BODY}, crcns=("ann", "s3cret!")) as srv:
        download(
            f"{srv.url}/index.php",
            tmp_path / "a.mat",
            progress=False,
            form={"username": "ann", "password": "s3cret!", "fn": "vim-1/a.mat", "submit": "Login"},
        )
        with pytest.raises(DownloadError, match="web page instead of the file") as err:
            download(
                f"{srv.url}/index.php",
                tmp_path / "b.mat",
                reject_html=True,
                progress=False,
                form={
                    "username": "ann",
                    "password": "wrong-pw",
                    "fn": "vim-1/a.mat",
                    "submit": "Login",
                },
            )
    assert (tmp_path / "a.mat").read_bytes() == BODY
    assert srv.requests[0]["method"] == "POST" and srv.requests[0]["form"]["password"] == "s3cret!"
    assert "wrong-pw" not in str(err.value) and not (tmp_path / "b.mat").exists()


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="http"):
        download("ftp://example.org/x", tmp_path / "x")
    with pytest.raises(ValueError, match="64 hex digits"):
        download("http://127.0.0.1/x", tmp_path / "x", sha256="abc")

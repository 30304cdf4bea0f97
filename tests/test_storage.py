"""storage: the cache folder says how to fix it when it cannot be used."""

import os

import pytest

from etecrm_lib.storage import cache_dir, make_folder


def test_cache_folder_that_is_a_file_names_ETECRM_CACHE(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "afile"))
    with pytest.raises(
        NotADirectoryError,
        match=r"cannot use the cache folder \(\$ETECRM_CACHE=.*afile\) .*afile/sim: "
        r".*afile is a file, not a folder\. Set the environment variable "
        r"ETECRM_CACHE to a folder you can write to",
    ):
        cache_dir("sim")


def test_cache_folder_follows_ETECRM_CACHE(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "c"))
    assert cache_dir("sim") == tmp_path / "c" / "sim" and (tmp_path / "c" / "sim").is_dir()


def test_a_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    # the tests may run as root, who may write anywhere: pretend the folder is read-only
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode),
    )
    with pytest.raises(
        PermissionError,
        match=r"cannot use the results folder .*ro: no permission to write into .*ro\. "
        r"Pick another",
    ):
        make_folder(tmp_path / "ro", "the results folder", "Pick another")

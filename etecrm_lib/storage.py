"""Files on disk: atomic writes, the cache folder, checksums, and what JSON files need.

Nothing half-written is ever left under its final name: every writer writes to a temporary file in
the same folder and renames it at the end (a rename within one file system is atomic).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

CACHE_ENV = "ETECRM_CACHE"
MAX_INFLATION = 200
"""A ``.npz`` whose arrays would take more than this many times its size on disk (and over
:data:`SMALL_FILE` in all) is refused before anything is inflated: a "zip bomb", not data."""
SMALL_FILE = 64 << 20


class CorruptFileError(ValueError):
    """A file that cannot be trusted: unreadable, truncated, damaged, or not what it claims to be.

    Every read of a results, dataset, feature-cache or weights file turns whatever went wrong into
    this error (a cache then recomputes; a results file is recomputed by the next run).
    """


class UnsafeNameError(ValueError):
    """A dataset, ROI or model name that cannot be part of a file name (see :func:`check_name`)."""


def check_name(name, what: str = "name") -> str:
    """``name`` if it can be part of a file name, else :class:`UnsafeNameError`.

    The one name rule for dataset, ROI and model names, checked where files are written and read:
    a non-empty printable string without ``/``, ``\\`` or ``..`` that does not start with ``.``,
    so that no name can lead a path out of its folder or hide a file.
    """
    if (
        not isinstance(name, str)
        or not name
        or not name.isprintable()
        or any(bad in name for bad in ("/", "\\", ".."))
        or name.startswith(".")
    ):
        raise UnsafeNameError(
            f"{what} {name!r} cannot be part of a file name: use a non-empty printable name "
            "without '/', '\\' or '..' that does not start with '.', e.g. 'my_data'"
        )
    return name


def check_inside(path, root) -> Path:
    """``path`` if it lies inside the folder ``root`` (after resolving links and ``..``), else
    :class:`UnsafeNameError`: no output of a run is ever written outside its output folder."""
    path, root = Path(path), Path(root)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafeNameError(
            f"refusing to write {path}: it is not inside the output folder {root}"
        )
    return path


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder: ``$ETECRM_CACHE`` if set, else ``~/.cache/etecrm``; ``sub`` names a
    subfolder.

    Created if needed. A folder that cannot be created or written to (a file in the way, no
    permission, a read-only disk) is an OSError whose message says how to choose another one.
    """
    from_env = os.environ.get(CACHE_ENV)
    root = Path(from_env or Path.home() / ".cache" / "etecrm").expanduser()
    what = (
        f"the cache folder (${CACHE_ENV}={from_env})"
        if from_env
        else f"the default cache folder (~/.cache/etecrm; ${CACHE_ENV} is not set)"
    )
    return make_folder(
        root / sub if sub else root,
        what,
        f"Set the environment variable {CACHE_ENV} to a folder you can write to, e.g. "
        f"`export {CACHE_ENV}=/tmp/etecrm-cache` in a shell or "
        f"os.environ['{CACHE_ENV}'] = '/tmp/etecrm-cache' in a notebook",
    )


def make_folder(path, what: str, fix: str = "Pass a folder you can write to") -> Path:
    """Create the folder ``path`` if needed and check that it can be written to. Returns it as a
    Path.

    ``what`` names the folder in the error (e.g. "the cache folder"); ``fix`` says what to do.
    Raises the OSError subclass of the failure (NotADirectoryError, PermissionError, ...) with a
    message that names the folder, the cause and the fix.
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"no permission to write into {path}")
    except OSError as err:
        cause, error_type = err.strerror or str(err), type(err)
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            cause, error_type = f"{blocker} is a file, not a folder", NotADirectoryError
        raise error_type(f"cannot use {what} {path}: {cause}. {fix}.") from None
    return path


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete
    it.

    Example::

        with atomic_write("results.json") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the usual permissions (umask applies)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


STALE_SECONDS = 3600
"""A temporary ``.part`` file untouched for this long was left by a killed run (a live write takes
seconds): only such files are cleaned up, never another run's write in progress."""


def remove_stale_parts(folder, prefix: str = "", older_than: float = STALE_SECONDS) -> int:
    """Delete the temporary files (``.<prefix>*.part``, see :func:`atomic_write`) in ``folder``
    that nothing has written to for ``older_than`` seconds. Returns how many were deleted."""
    n = 0
    for part in Path(folder).glob(f".{prefix}*.part"):
        try:
            if time.time() - part.stat().st_mtime > older_than:
                part.unlink()
                n += 1
        except FileNotFoundError:  # its run finished (renamed it) or removed it meanwhile
            continue
    return n


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(value):
    """``value`` with numpy scalars/arrays and paths turned into plain JSON types (NaN/inf ->
    None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def seeds_label(seeds) -> str:
    """A seed set in a file name: ``[0, 1, 2, 3, 4] -> "0-4"``, ``[3] -> "3"``, ``[0, 2, 7] ->
    "0+2+7"``."""
    seeds = sorted({int(s) for s in seeds})
    if not seeds:
        raise ValueError("a seed set needs at least one seed")
    if len(seeds) > 1 and seeds[-1] - seeds[0] == len(seeds) - 1:  # consecutive (no list built)
        return f"{seeds[0]}-{seeds[-1]}"
    return "+".join(str(s) for s in seeds)


# ----------------------------------------------------------------------------- reading .npz files
def _npz_headers(archive: zipfile.ZipFile, path: Path) -> dict:
    """``{array name: (shape, dtype)}`` of every member, read from the ``.npy`` headers only."""
    headers, declared = {}, 0
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise CorruptFileError(f"{path} holds {info.filename!r}, which is not a numpy array")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(f)
        if dtype.hasobject:
            raise CorruptFileError(
                f"{path}: array {info.filename[:-4]!r} holds Python objects (pickled data, which "
                "can run code); etecrm never loads them. Only numeric and text arrays are read"
            )
        headers[info.filename[:-4]] = (tuple(shape), dtype)
        declared += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    limit = max(SMALL_FILE, MAX_INFLATION * path.stat().st_size)
    if declared > limit:
        raise CorruptFileError(
            f"{path} is {path.stat().st_size} bytes but says its arrays hold {declared} bytes "
            f"(over {MAX_INFLATION} times its size): refused before inflating it"
        )
    return headers


def read_npz(path, what: str = "file", check=None, fix: str = "delete it and create it again"):
    """Every array of the ``.npz`` file ``path`` as ``{name: array}``, read safely.

    Nothing is inflated before the members' ``.npy`` headers have been read and checked: object
    (pickled) arrays are refused, and so is a file whose arrays would take over
    :data:`MAX_INFLATION` times its size. ``check(headers, read)``, if given, sees ``{name: (shape,
    dtype)}`` first (``read(name)`` reads one small member, e.g. metadata) and raises
    :class:`CorruptFileError` to refuse the file. Any failure of the read (a damaged zip, a bad
    CRC, a truncated or edited member...) becomes :class:`CorruptFileError` naming ``what`` and
    ``fix``; a missing file stays FileNotFoundError.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = _npz_headers(archive, path)

            def read(name):
                with archive.open(f"{name}.npy") as f:
                    return np.lib.format.read_array(f, allow_pickle=False)

            if check is not None:
                check(headers, read)
            return {name: read(name) for name in headers}
    except CorruptFileError:
        raise
    except Exception as err:  # zlib, zipfile, numpy header parsing...: damage shows in many forms
        cause = type(err).__name__ + ("" if "pickle" in str(err) else f": {err}")
        raise CorruptFileError(f"{path} is not a readable {what} ({cause[:200]}); {fix}") from None

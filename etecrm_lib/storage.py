"""Files on disk: atomic writes, the cache folder, checksums.

Nothing half-written is ever left under its final name: every writer writes to a temporary file in
the same folder and renames it at the end (a rename within one file system is atomic).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

CACHE_ENV = "ETECRM_CACHE"


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


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()

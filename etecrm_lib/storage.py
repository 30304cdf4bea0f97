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
    """The cache folder: ``$ETECRM_CACHE`` if set, else ``~/.cache/etecrm``; ``sub`` names a subfolder."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "etecrm").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it.

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

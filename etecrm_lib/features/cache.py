"""The on-disk cache of image features (Gabor pyramid, CNN layers): computed once per images and
settings.

A cached array is stored as ``<cache>/features/<kind>-<key>.npz`` together with its key, the SHA-256
of the settings (JSON) and of the images' bytes; it is used only when the key and the row count
match, and written atomically (storage.atomic_write), so an interrupted run leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np

from ..storage import CorruptFileError, atomic_write, cache_dir, read_npz


def images_digest(images: np.ndarray) -> str:
    """SHA-256 of the images' shape and bytes: the cache key of anything computed from them."""
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    return h.hexdigest()


def cache_key(settings: dict, images: np.ndarray) -> str:
    """The key of features computed with ``settings`` (a JSON-able dict) from ``images``."""
    return hashlib.sha256(
        (json.dumps(settings, sort_keys=True, default=str) + images_digest(images)).encode()
    ).hexdigest()


def read_cache(kind: str, key: str, n_rows: int):
    """The cached (n_rows, F) array stored under ``key``, or None if absent, unreadable or not
    matching."""
    path = cache_dir("features") / f"{kind}-{key[:24]}.npz"
    if not path.exists():
        return None

    def check(headers, read):
        shape = headers.get("features", ((),))[0]
        if set(headers) != {"features", "key"} or len(shape) != 2 or shape[0] != n_rows:
            raise CorruptFileError(f"{path} holds {headers}, not ({n_rows}, F) features")
        if str(read("key")) != key:
            raise CorruptFileError(f"{path} holds the features of other images or settings")

    try:
        return read_npz(path, "feature cache file", check)["features"]
    except (CorruptFileError, OSError) as err:  # damaged or foreign: recomputed and replaced
        warnings.warn(f"feature cache: {err}; recomputing it", stacklevel=3)
    return None


def write_cache(kind: str, key: str, features: np.ndarray) -> None:
    """Store ``features`` under ``key`` (atomically: a temporary file renamed at the end)."""
    with atomic_write(cache_dir("features") / f"{kind}-{key[:24]}.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, features=features, key=np.array(key))


def cached_features(
    kind: str, settings: dict, images: np.ndarray, compute, cache: bool = True
) -> np.ndarray:
    """``compute(images)`` -> (N, F) array, cached on disk under a key of ``settings`` + the images'
    hash.

    The file stores its own key and is used only if the key and the row count match (else it is
    recomputed and replaced); it is written atomically, so an interrupted run leaves no half file.
    """
    if not cache:
        return compute(images)
    key = cache_key(settings, images)
    features = read_cache(kind, key, images.shape[0])
    if features is None:
        features = compute(images)
        write_cache(kind, key, features)
    return features

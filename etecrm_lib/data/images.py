"""Image helpers for the simulated cortex: sample photographs, dead leaves, 1/f noise, the aperture.

No download is needed. The photographs are the sample images that ship inside installed packages
(scikit-image, scikit-learn, matplotlib); :mod:`.natural_statistics` crops them to measure what
real photographs look like beside the stimuli, which are procedural scenes (:mod:`.scenes`).
*Dead-leaves* images (overlapping discs whose radii follow a power law: the 1/f amplitude spectrum
and the occlusion edges of natural images, Lee, Mumford & Huang 2001) serve the tests.

Every image is grayscale ``float32 (size, size)`` in [0, 1], shown in a circular aperture on
mid-gray 0.5 (outside the aperture the value is exactly 0.5), and quantised to steps of 1/256 like
an 8-bit display (0.5 is one of the steps).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

GRAY = 0.5
LEVELS = 256  # quantisation steps per unit of intensity (0.5 = 128/256 is a step)


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray | None:
    """One sample photograph as grayscale ``float32 (H, W)`` in [0, 1], or None if not installed.

    ``name`` is a ``skimage.data`` function name, ``"sklearn_china"``/``"sklearn_flower"``
    (``sklearn.datasets.load_sample_image``) or ``"grace_hopper"`` (matplotlib sample data).
    Photos are read once per process and returned read-only (copy one to change it).
    """
    try:
        if name.startswith(
            "sklearn_"
        ):  # read the file directly: importing scikit-learn takes seconds
            import importlib.util
            from pathlib import Path

            from PIL import Image

            package = Path(importlib.util.find_spec("sklearn").origin).parent
            image = Image.open(package / "datasets" / "images" / (name[len("sklearn_") :] + ".jpg"))
        elif name == "grace_hopper":
            import matplotlib.cbook
            from PIL import Image

            image = Image.open(
                matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
            )
        else:
            import skimage.data

            image = getattr(skimage.data, name)()
    except Exception:  # noqa: BLE001 - a missing sample file only means one source fewer
        return None
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    image = image.astype(np.float32) / scale
    if image.ndim == 3:  # RGB(A) -> luminance (ITU-R 601 weights)
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    image = np.clip(image, 0.0, 1.0)
    image.flags.writeable = False
    return image


def load_photos(names) -> dict:
    """The photographs among ``names`` that are installed here: ``{name: float32 (H, W)}``."""
    photos = {name: load_photo(name) for name in names}
    missing = [name for name, image in photos.items() if image is None]
    if missing:
        warnings.warn(
            f"sample photographs not available in this installation: {missing}; "
            "the simulation uses the others (and more dead-leaves images if none is left)",
            stacklevel=2,
        )
    return {name: image for name, image in photos.items() if image is not None}


def random_crops(
    photos: dict, n: int, size: int, rng: np.random.Generator, min_scale: float = 0.3
) -> tuple[np.ndarray, list]:
    """``n`` random square crops of the photographs, resized to ``size``: ``float32 (n, size,
    size)``.

    Each crop picks a photograph at random, a side between ``min_scale`` and 1 times the photo's
    shorter side, a random position and a random left-right flip. Returns the crops (no aperture
    yet) and one ``(name, top, left, side, flipped)`` record per crop.
    """
    names = sorted(photos)
    crops = np.empty((n, size, size), dtype=np.float32)
    records = []
    for i in range(n):
        name = names[rng.integers(len(names))]
        photo = photos[name]
        short = min(photo.shape)
        side = int(round(short * rng.uniform(min_scale, 1.0)))
        top = int(rng.integers(photo.shape[0] - side + 1))
        left = int(rng.integers(photo.shape[1] - side + 1))
        flipped = bool(rng.random() < 0.5)
        crop = torch.from_numpy(photo[top : top + side, left : left + side].copy())
        crop = F.interpolate(
            crop[None, None],
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0, 0].numpy()
        crops[i] = crop[:, ::-1] if flipped else crop
        records.append((name, top, left, side, flipped))
    return crops, records


def dead_leaves(n: int, size: int, rng: np.random.Generator, n_leaves: int = 400) -> np.ndarray:
    """``n`` dead-leaves images ``float32 (n, size, size)`` in [0, 1] (no aperture yet).

    Discs of uniform random gray are dropped one on top of the other (later ones occlude earlier
    ones). Radii follow p(r) ~ r^-3 between ``size/50`` and ``size/2.5``, which makes the images
    scale-invariant with a roughly 1/f amplitude spectrum. A faint 1/f noise texture and a small
    random optical blur keep the leaves from being perfectly flat and sharp.
    """
    r_min, r_max = size / 50, size / 2.5
    margin = int(np.ceil(r_max))
    backgrounds, leaves = np.empty(n, dtype=np.float32), []
    for i in range(n):  # the same draws, in the same order, as painting one image after the other
        backgrounds[i] = rng.uniform(0.1, 0.9)
        u = rng.random(n_leaves)  # inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max]
        radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
        centres = rng.uniform(-margin, size + margin, size=(n_leaves, 2))
        leaves.append((radii, centres, rng.uniform(0.05, 0.95, size=n_leaves).astype(np.float32)))
    images = np.empty((n, size, size), dtype=np.float32)
    for start in range(0, n, 64):
        chunk = leaves[start : start + 64]
        radii, centres, grays = (np.concatenate([leaf[k] for leaf in chunk]) for k in range(3))
        top = top_disc(radii, centres, len(chunk), n_leaves, size, margin)
        images[start : start + len(chunk)] = np.where(
            top >= 0, grays[np.maximum(top, 0)], backgrounds[start : start + len(chunk), None, None]
        )
    images += 0.04 * pink_noise(n, size, rng)
    sigmas = rng.uniform(0.3, 1.0, size=n) * size / 128
    return np.clip(_gaussian_blur(images, sigmas), 0.0, 1.0)


def top_disc(
    radii: np.ndarray, centres: np.ndarray, n_images: int, n_leaves: int, size: int, margin: int
) -> np.ndarray:
    """Which disc is on top at each pixel: ``int64 (n_images, size, size)``, -1 where none is.

    Disc ``k`` (of ``n_images * n_leaves``, image-major) has centre ``centres[k] = (y, x)`` in
    pixels and radius ``radii[k]``. Later discs cover earlier ones: each pixel keeps the largest
    index among the discs that contain it. Discs are cut to their bounding boxes, as painted on a
    canvas ``margin`` pixels wider than the image on every side, and then to the image; all pixels
    of all boxes are listed at once (no loop over discs).
    """
    cy, cx = centres[:, 0], centres[:, 1]
    side = size + 2 * margin
    # the painted box on the canvas (as a loop over discs would paint it), then its part in the
    # image
    y0 = np.maximum(np.maximum(cy - radii + margin, 0).astype(np.int64), margin) - margin
    y1 = (
        np.minimum(np.minimum(cy + radii + margin + 1, side).astype(np.int64), margin + size)
        - margin
    )
    x0 = np.maximum(np.maximum(cx - radii + margin, 0).astype(np.int64), margin) - margin
    x1 = (
        np.minimum(np.minimum(cx + radii + margin + 1, side).astype(np.int64), margin + size)
        - margin
    )
    width = np.maximum(x1 - x0, 0)
    count = np.maximum(y1 - y0, 0) * width
    disc = torch.from_numpy(np.repeat(np.arange(radii.size), count))
    offset = torch.arange(disc.numel()) - torch.from_numpy(
        np.repeat(np.cumsum(count) - count, count)
    )
    t = {
        name: torch.from_numpy(np.ascontiguousarray(a))[disc]
        for name, a in (
            ("y0", y0),
            ("x0", x0),
            ("width", width),
            ("cy", cy),
            ("cx", cx),
            ("r2", radii * radii),
        )
    }
    yy, xx = t["y0"] + offset // t["width"], t["x0"] + offset % t["width"]
    inside = (yy - t["cy"]) ** 2 + (xx - t["cx"]) ** 2 <= t["r2"]
    disc = disc[inside]
    pixel = ((disc // n_leaves) * size + yy[inside]) * size + xx[inside]
    top = torch.full((n_images * size * size,), -1, dtype=torch.int64)
    top.scatter_reduce_(0, pixel, disc, reduce="amax")
    return top.numpy().reshape(n_images, size, size)


def pink_noise(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` images of 1/f (pink) noise, ``float32 (n, size, size)``, zero mean and unit std
    each."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    amplitude[0, 0] = 0.0
    spectrum = rng.normal(size=(n, size, size // 2 + 1)) + 1j * rng.normal(
        size=(n, size, size // 2 + 1)
    )
    noise = np.fft.irfft2(spectrum * amplitude, s=(size, size))
    noise -= noise.mean(axis=(1, 2), keepdims=True)
    noise /= noise.std(axis=(1, 2), keepdims=True)
    return noise.astype(np.float32)


def _gaussian_blur(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Blur image i with a Gaussian of std ``sigmas[i]`` pixels (in the Fourier domain,
    periodic)."""
    size = images.shape[-1]
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f2 = (fy**2 + fx**2)[None]
    gain = np.exp(-2 * np.pi**2 * f2 * sigmas[:, None, None] ** 2)
    return np.fft.irfft2(np.fft.rfft2(images) * gain, s=(size, size)).astype(np.float32)


def normalise_contrast(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each image's mean to mid-gray and scale its contrast by a random factor in [0.8, 1.2].

    Setting the mean to 0.5 makes the aperture edge smooth; the random gain keeps the natural
    spread of contrast across images. Values are clipped to [0, 1].
    """
    gains = rng.uniform(0.8, 1.2, size=(len(images), 1, 1)).astype(np.float32)
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    return np.clip(GRAY + gains * centred, 0.0, 1.0)


def aperture_mask(size: int, edge: float = 1 / 32) -> np.ndarray:
    """``float32 (size, size)``: 1 inside a circle touching the image edges, 0 outside.

    The last ``edge * size`` pixels inside the circle ramp down with a raised cosine, so the image
    fades into the gray surround without a sharp edge.
    """
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - centre, xx - centre)
    outer = size / 2
    width = max(edge * size, 1.0)
    ramp = np.clip((outer - radius) / width, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)


def apply_aperture(images: np.ndarray) -> np.ndarray:
    """Show images in the circular aperture on mid-gray, quantised to steps of 1/256."""
    mask = aperture_mask(images.shape[-1])
    shown = GRAY + mask * (images - GRAY)
    return (np.round(np.clip(shown, 0.0, 1.0) * LEVELS) / LEVELS).astype(np.float32)

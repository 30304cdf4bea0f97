"""How natural are the stimuli? Image statistics of the simulation's scenes beside real photographs.

:func:`image_statistics` measures four statistics per image, on the central square inside the
aperture (side 0.68 x the image):

- ``spectrum_slope``: slope of log amplitude against log spatial frequency (radial average of the
  Hann-windowed image, 2 cycles per image to 0.25 cycles per pixel); photographs are near -1 to
  -1.4 (Field 1987; Tolhurst, Tadmor & Chao 1992);
- ``edge_density``: share of pixels whose gradient (Sobel after a 1-pixel Gaussian blur) exceeds
  :data:`EDGE_THRESHOLD` intensity units per pixel;
- ``junction_density``: corners and junctions per 1,000 pixels: local maxima (5 x 5) of the Harris
  measure (structure tensor over a 1.5-pixel Gaussian, k = 0.05) above :data:`HARRIS_THRESHOLD`;
- ``rms_contrast``: standard deviation of the pixels divided by their mean.

:func:`photograph_crops` prepares real photographs exactly as the stimuli are prepared (random
square crops resized to the stimulus size, mean set to mid-gray with a random contrast gain,
circular aperture). The photographs are the ones that ship inside installed packages under
licences that allow it (:data:`REFERENCE_PHOTOS`). :func:`compare_to_photographs` puts both side by
side (10th, 50th and 90th percentiles).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .images import apply_aperture, load_photos, normalise_contrast, random_crops

# Photographs bundled with scikit-image (and matplotlib) and their licences, from their docstrings.
REFERENCE_PHOTOS = {
    "astronaut": "public domain (NASA)",
    "camera": "CC0 (Lav Varshney)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "coins": "no known copyright restrictions (Walters Art Museum)",
    "rocket": "public domain (SpaceX)",
    "grace_hopper": "public domain (US Navy), matplotlib sample data",
    "brick": "CC0 (cc0textures)",
    "grass": "CC0 (cc0textures)",
    "gravel": "CC0 (cc0textures)",
}
EDGE_THRESHOLD = 0.04
HARRIS_THRESHOLD = 1e-5
STATISTICS = ("spectrum_slope", "edge_density", "junction_density", "rms_contrast")


def central_square(images: np.ndarray) -> np.ndarray:
    """The central square inside the circular aperture (side 0.68 x the image): ``(N, s, s)``."""
    size = images.shape[-1]
    side = int(0.68 * size)
    start = (size - side) // 2
    return np.asarray(images[:, start : start + side, start : start + side], dtype=np.float64)


def spectrum_slope(images: np.ndarray) -> np.ndarray:
    """Slope of log amplitude over log frequency per image: ``(N, s, s) -> (N,)`` (see module)."""
    n, side = images.shape[0], images.shape[-1]
    window = np.outer(np.hanning(side), np.hanning(side))
    centred = (images - images.mean(axis=(1, 2), keepdims=True)) * window
    amplitude = np.abs(np.fft.fft2(centred))
    freq = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :])
    edges = np.geomspace(2 / side, 0.25, 13)
    bins = np.digitize(freq.ravel(), edges)
    keep = (bins > 0) & (bins < len(edges))
    counts = np.bincount(bins[keep], minlength=len(edges))[1:]
    sums = np.stack([np.bincount(bins[keep], a.ravel()[keep], len(edges))[1:] for a in amplitude])
    centres = np.sqrt(edges[:-1] * edges[1:])
    log_amp = np.log(sums / np.maximum(counts, 1) + 1e-12)
    x = np.log(centres) - np.log(centres).mean()
    return ((log_amp - log_amp.mean(1, keepdims=True)) @ x) / (x @ x) if n else np.empty(0)


def image_statistics(images: np.ndarray) -> dict:
    """The four statistics of the module docstring per image: ``{name: float64 (N,)}``.

    ``images``: ``(N, H, W)`` in [0, 1] (stimuli as shown, in their aperture).
    """
    square = central_square(images)
    edge, junction = [], []
    for image in square:
        smooth = ndimage.gaussian_filter(image, 1.0)
        gx, gy = ndimage.sobel(smooth, 1) / 8, ndimage.sobel(smooth, 0) / 8
        edge.append(np.mean(np.hypot(gx, gy) > EDGE_THRESHOLD))
        sxx, syy, sxy = (ndimage.gaussian_filter(g, 1.5) for g in (gx * gx, gy * gy, gx * gy))
        harris = sxx * syy - sxy**2 - 0.05 * (sxx + syy) ** 2
        peaks = (harris == ndimage.maximum_filter(harris, 5)) & (harris > HARRIS_THRESHOLD)
        junction.append(1000 * peaks[3:-3, 3:-3].mean())
    mean = square.mean(axis=(1, 2))
    return {
        "spectrum_slope": spectrum_slope(square),
        "edge_density": np.asarray(edge),
        "junction_density": np.asarray(junction),
        "rms_contrast": square.std(axis=(1, 2)) / np.maximum(mean, 1e-6),
    }


def photograph_crops(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, list]:
    """``n`` crops of :data:`REFERENCE_PHOTOS`, prepared like the stimuli, and each crop's photo."""
    rng = np.random.default_rng(seed)
    photos = load_photos(REFERENCE_PHOTOS)
    crops, records = random_crops(photos, n, size, rng, min_scale=0.3)
    return apply_aperture(normalise_contrast(crops, rng)), [record[0] for record in records]


def compare_to_photographs(images: np.ndarray, n_photos: int = 200, seed: int = 0) -> dict:
    """Per statistic, the (10th, 50th, 90th) percentiles over ``images`` and over photograph crops.

    Returns ``{name: {"stimuli": (q10, q50, q90), "photographs": (q10, q50, q90)}}``.
    """
    photos, _ = photograph_crops(n_photos, images.shape[-1], seed)
    ours, theirs = image_statistics(images), image_statistics(photos)
    quantiles = lambda values: tuple(float(q) for q in np.quantile(values, [0.1, 0.5, 0.9]))  # noqa: E731
    return {
        name: {"stimuli": quantiles(ours[name]), "photographs": quantiles(theirs[name])}
        for name in STATISTICS
    }

"""The Gabor wavelet pyramid (GWP) of Kay et al. (2008): model complex cells of V1, at every scale.

Each feature is the *energy* of one quadrature pair of Gabor filters (a cosine and a sine grating
under the same Gaussian envelope) at one position, orientation and wavelength, passed through a
compressive nonlinearity::

    E = sqrt((g_cos . image)^2 + (g_sin . image)^2)        feature = log(1 + E)  (or sqrt(E))

Layout (Kay et al. 2008, Nature 452:352, supplementary methods): wavelengths from 4 px to the image
size in octave steps, 8 orientations, and for wavelength L an (S/L) x (S/L) grid of positions with
spacing L (S = image size). For S = 128: (1 + 4 + 16 + 64 + 256 + 1024) = 1365 positions x 8
orientations = 10,920 features.

The envelope's standard deviation is ``sigma_per_wavelength x L`` (0.56 gives the classic
one-octave bandwidth). Every filter has unit L2 norm, and images are centred on mid-gray (0.5), so
that a uniform gray image gives zero energy.

Because the filters of one wavelength and orientation are translated copies of each other on a
grid of step L, the whole scale is one strided convolution (``torch.nn.functional.conv2d`` with
stride L); the field outside the image is mid-gray (zero padding after centring).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
import tqdm.auto

from ..device import get_device
from ..profiles import DEFAULT_PROFILE, Profile, check_profile
from .cache import cached_features

NONLINEARITIES = ("log", "sqrt", "none")


@dataclass(frozen=True)
class GaborConfig:
    """How to build the Gabor wavelet pyramid.

    min_wavelength : shortest wavelength in pixels (4 in Kay et al.)
    max_wavelength : longest wavelength in pixels (None: the image size)
    n_orientations : orientations evenly spaced over 180 degrees
    sigma_per_wavelength : Gaussian envelope s.d. as a fraction of the wavelength (0.56: one octave)
    truncate : the filters are cut off at this many envelope s.d. from their centre
    nonlinearity : "log" (log(1 + E)), "sqrt" (sqrt(E)) or "none"
    batch_size : images per batch
    """

    min_wavelength: int = 4
    max_wavelength: int | None = None
    n_orientations: int = 8
    sigma_per_wavelength: float = 0.56
    truncate: float = 4.0
    nonlinearity: str = "log"
    batch_size: int = 64

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE, **changes) -> "GaborConfig":
        """The same pyramid for both profiles (Kay's layout); only the batch size differs."""
        base = cls(batch_size=32) if check_profile(profile) == "quick" else cls()
        return replace(base, **changes)

    def wavelengths(self, image_size: int) -> list:
        """The wavelengths (pixels) of the pyramid for square images of ``image_size`` pixels."""
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {NONLINEARITIES}, got {self.nonlinearity!r}"
            )
        top = self.max_wavelength or image_size
        waves, wave = [], self.min_wavelength
        while wave <= top:
            if image_size % wave:
                raise ValueError(
                    f"image size {image_size} px is not a multiple of the wavelength "
                    f"{wave} px: the pyramid puts "
                    "(size / wavelength)^2 filters on a grid; resize the images to "
                    f"{self.min_wavelength} x a power "
                    f"of 2 (e.g. 64 or 128 px) or change min_wavelength / max_wavelength"
                )
            waves.append(wave)
            wave *= 2
        if not waves:
            raise ValueError(
                f"no wavelength between {self.min_wavelength} and {top} px: check the config"
            )
        return waves


def gabor_layout(image_size: int, config: GaborConfig | None = None) -> dict:
    """What each feature column is: a dict of (F,) arrays, in the order of :func:`gabor_features`.

    ``wavelength`` (px), ``orientation`` (degrees, counter-clockwise from horizontal wave vector),
    ``x``, ``y`` (centre in pixel coordinates, 0 = centre of the first pixel, y downwards),
    ``sigma`` (px). Order: wavelength (short to long), then grid row, grid column, orientation.
    """
    config = config or GaborConfig()
    out = {k: [] for k in ("wavelength", "orientation", "x", "y", "sigma")}
    angles = np.arange(config.n_orientations) * 180.0 / config.n_orientations
    for wave in config.wavelengths(image_size):
        n = image_size // wave
        centres = (np.arange(n) + 0.5) * wave - 0.5
        yy, xx, oo = np.meshgrid(centres, centres, angles, indexing="ij")
        out["wavelength"].append(np.full(oo.size, wave, float))
        out["orientation"].append(oo.ravel())
        out["x"].append(xx.ravel())
        out["y"].append(yy.ravel())
        out["sigma"].append(np.full(oo.size, config.sigma_per_wavelength * wave))
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def gabor_kernels(wavelength: int, config: GaborConfig, device=None):
    """The quadrature pairs of one wavelength as conv2d weights.

    Returns ``(weights, padding)``: weights ``(2 * n_orientations, 1, K, K)`` float32, the cosine
    filters first, then the sine filters; each of unit L2 norm.
    The kernel centre sits at ((K - 1) / 2, (K - 1) / 2); K - wavelength is even, so with stride =
    wavelength and the returned padding, output (i, j) is centred on pixel
    ((i + .5) L - .5, (j + .5) L - .5).
    """
    sigma = config.sigma_per_wavelength * wavelength
    size = wavelength + 2 * math.ceil(max(0.0, config.truncate * sigma - wavelength / 2))
    u = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    envelope = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    filters = []
    for kind in (torch.cos, torch.sin):
        for k in range(config.n_orientations):
            theta = math.pi * k / config.n_orientations
            phase = 2 * math.pi / wavelength * (xx * math.cos(theta) - yy * math.sin(theta))
            filters.append(envelope * kind(phase))
    weights = torch.stack(filters)
    weights = weights / weights.square().sum(dim=(1, 2), keepdim=True).sqrt()
    weights = weights[:, None].to(device=get_device(device), dtype=torch.float32)
    return weights, (size - wavelength) // 2


def gabor_energy(images, config: GaborConfig | None = None, device=None) -> torch.Tensor:
    """Raw quadrature energies ``(N, F)`` (no nonlinearity) of one batch of images ``(N, S, S)`` in
    [0, 1]."""
    config = config or GaborConfig()
    device = get_device(device)
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = (x.to(device, torch.float32) - 0.5)[:, None]
    n_or = config.n_orientations
    out = []
    for wave in config.wavelengths(x.shape[-1]):
        weights, pad = gabor_kernels(wave, config, device)
        resp = F.conv2d(x, weights, stride=wave, padding=pad)  # (N, 2 * n_or, n, n)
        energy = torch.sqrt(resp[:, :n_or] ** 2 + resp[:, n_or:] ** 2)
        out.append(energy.permute(0, 2, 3, 1).reshape(x.shape[0], -1))  # row, column, orientation
    return torch.cat(out, dim=1)


def compress(energy: torch.Tensor, nonlinearity: str) -> torch.Tensor:
    """The compressive nonlinearity: log(1 + E), sqrt(E) or E."""
    if nonlinearity == "log":
        return torch.log1p(energy)
    if nonlinearity == "sqrt":
        return torch.sqrt(energy)
    if nonlinearity == "none":
        return energy
    raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")


def check_images(images) -> np.ndarray:
    """Validate a stack of grayscale images: float32 ``(N, H, W)``, square, finite, in [0, 1]."""
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
    if images.ndim == 2:
        raise ValueError(
            f"images must be a stack (N, H, W), got one image of shape {images.shape}; use "
            "images[None]"
        )
    if images.ndim != 3:
        raise ValueError(
            f"images must have shape (N, H, W) (grayscale), got shape {images.shape}; "
            "convert colour images to grayscale (mean over the colour axis) first"
        )
    if images.shape[1] != images.shape[2]:
        raise ValueError(
            f"images must be square, got {images.shape[1]}x{images.shape[2]}; crop or "
            "resize them first"
        )
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all() or images.min() < -1e-4 or images.max() > 1 + 1e-4:
        raise ValueError(
            "images must be finite and scaled to [0, 1] (mid-gray = 0.5); divide 8-bit "
            "images by 255"
        )
    return images


def gabor_features(
    images,
    config: GaborConfig | None = None,
    device=None,
    cache: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Gabor wavelet pyramid features of grayscale images.

    images : (N, S, S) in [0, 1], S a multiple of ``min_wavelength`` x a power of 2 (64, 128, ...)
    Returns float32 (N, F), F = n_orientations x sum over wavelengths L of (S / L)^2 (10,920 for S =
    128); columns described by :func:`gabor_layout`. Cached on disk (see :func:`cached_features`).
    """
    config = config or GaborConfig()
    images = check_images(images)
    config.wavelengths(images.shape[-1])  # fail early on a bad size
    device = get_device(device)

    def compute(imgs):
        out = []
        for start in tqdm.auto.tqdm(
            range(0, len(imgs), config.batch_size),
            desc="Gabor pyramid",
            disable=not progress,
            leave=False,
        ):
            energy = gabor_energy(imgs[start : start + config.batch_size], config, device)
            out.append(compress(energy, config.nonlinearity).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    settings = {k: v for k, v in asdict(config).items() if k != "batch_size"}
    return cached_features("gabor", settings, images, compute, cache)

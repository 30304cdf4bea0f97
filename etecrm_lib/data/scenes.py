"""Procedural object scenes: the stimuli of the simulated cortex, one distinct scene per image.

vim-1 showed 1,870 distinct photographs. The photographs that ship inside installed packages are
too few (about 16) to give that many distinct images, and crops of a few photographs are clustered
(and would share sources between train and test). So every stimulus is its own procedural scene,
drawn from its own random stream, with the structure that photographs have and that V4/LO-like
features respond to:

- **objects with closed contours and corners**: each object is a filled shape, a regular polygon
  with 3-6 sides (corners) or an ellipse, stretched and rotated (an affine map), so there are
  triangles, parallelograms, rounded and elongated shapes of every orientation;
- **occlusion**: objects are painted back to front, nearer ones cover farther ones (T-junctions,
  as in the dead-leaves model of Lee, Mumford & Huang 2001);
- **scale invariance**: object sizes follow p(R) ~ R^-3 (as in dead leaves), which gives the
  roughly 1/f amplitude spectrum of photographs;
- **surfaces**: each object has its own gray level, a linear shading gradient and, for some, a
  grating or noise texture; the background is 1/f noise; a small optical blur and a faint 1/f
  noise over everything keep edges and surfaces from being perfectly sharp and flat;
- **clutter and contrast vary** from scene to scene (10 to 70 objects, random contrast).

Each image's source id is ``"scene:<split>:<k>"``: its own stream, so no two images share a source
and train and test never do. :mod:`.natural_statistics` measures these scenes against photographs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .images import apply_aperture, normalise_contrast, pink_noise

MAX_OBJECTS = 120
MIN_OBJECTS = 20
SIDES = (3, 4, 5, 6, 0)  # 0: an ellipse


def scene_parameters(rng: np.random.Generator, size: int) -> dict:
    """The random draws of one scene (float64 arrays of length :data:`MAX_OBJECTS` per object).

    Objects beyond the scene's own count are switched off (``on`` False). Sizes are radii in pixels.
    """
    n = MAX_OBJECTS
    r_min, r_max = size / 40, size / 2.5
    u = rng.random(n)
    radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5  # p(R) ~ R^-3
    return {
        "on": np.arange(n) < rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1),
        "cy": rng.uniform(-0.1 * size, 1.1 * size, n),
        "cx": rng.uniform(-0.1 * size, 1.1 * size, n),
        "radius": radius,
        "sides": rng.choice(SIDES, n).astype(np.float64),
        "stretch": np.exp(rng.normal(0, 0.4, n)),
        "angle": rng.uniform(0, math.pi, n),
        "spin": rng.uniform(0, 2 * math.pi, n),
        "gray": rng.uniform(0.05, 0.95, n),
        "shade": rng.normal(0, 0.15, n) / radius,  # gray change per pixel, about +-0.15 per radius
        "shade_angle": rng.uniform(0, 2 * math.pi, n),
        "texture": rng.uniform(0, 0.15, n) * (rng.random(n) < 0.25),
        "texture_freq": rng.uniform(0.08, 0.35, n),  # cycles per pixel
        "texture_angle": rng.uniform(0, math.pi, n),
        "background": np.full(n, rng.uniform(0.2, 0.8)),
        "blur": np.full(n, rng.uniform(0.3, 0.9) * size / 128),
    }


def render_scenes(params: list, size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint scenes (one :func:`scene_parameters` dict each) back to front.

    Returns the objects' gray levels ``float32 (B, size, size)`` and where any object is, ``bool
    (B, size, size)`` (elsewhere the caller paints the background). At each pixel the last object
    (in drawing order) whose shape contains the pixel is visible. A shape is a unit regular polygon
    (``sides`` >= 3) or unit disc (0) in its own frame, turned by ``spin``, then stretched
    (``stretch`` along one axis, 1/``stretch`` along the other), rotated by ``angle`` and scaled by
    ``radius``. Only the pixels of each object's bounding box are tested (all at once, no loop).
    """
    on = np.concatenate([s["on"] for s in params])
    p = {
        key: torch.as_tensor(np.concatenate([s[key] for s in params])[on], device=device)
        for key in params[0]
    }
    p = {key: values.float() if values.is_floating_point() else values for key, values in p.items()}
    counts = [int(s["on"].sum()) for s in params]
    image = torch.as_tensor(np.repeat(np.arange(len(params)), counts), device=device)
    # the axis-aligned box around the stretched, rotated unit circle (which holds every shape)
    a, b = p["radius"] * p["stretch"], p["radius"] / p["stretch"]
    cos, sin = torch.cos(p["angle"]), torch.sin(p["angle"])
    half = {"cx": torch.hypot(a * cos, b * sin) + 1, "cy": torch.hypot(a * sin, b * cos) + 1}
    y0, x0 = ((p[c] - half[c]).floor().clamp(0, size).long() for c in ("cy", "cx"))
    y1, x1 = ((p[c] + half[c]).ceil().clamp(0, size).long() for c in ("cy", "cx"))
    width = x1 - x0
    count = (y1 - y0) * width
    obj = torch.repeat_interleave(torch.arange(count.numel(), device=device), count)
    offset = torch.arange(obj.numel(), device=device) - torch.repeat_interleave(
        count.cumsum(0) - count, count
    )
    row = torch.div(offset, width[obj], rounding_mode="floor")
    yy, xx = (y0[obj] + row).float(), (x0[obj] + offset - row * width[obj]).float()
    # one gather of every per-object number the shape test needs (a gather per name is slower)
    shape = torch.stack(
        [p["cy"], p["cx"], cos / a, sin / a, -sin / b, cos / b, p["spin"], p["sides"]], 1
    )[obj]
    dy, dx = yy - shape[:, 0], xx - shape[:, 1]
    u, v = shape[:, 2] * dx + shape[:, 3] * dy, shape[:, 4] * dx + shape[:, 5] * dy
    sides = shape[:, 7]
    wedge = 2 * math.pi / sides.clamp_min(3)
    theta = torch.remainder(torch.atan2(v, u) + shape[:, 6], wedge)
    edge = torch.where(sides > 0, torch.cos(wedge / 2) / torch.cos(theta - wedge / 2), 1.0)
    inside = torch.hypot(u, v) <= edge
    pixel = (image[obj] * size + yy.long()) * size + xx.long()
    top = torch.full((len(params) * size * size,), -1, dtype=torch.int64, device=device)
    top.scatter_reduce_(0, pixel[inside], obj[inside], reduce="amax")
    top = top.reshape(len(params), size, size)
    # the visible object's surface at each pixel: gray + shading gradient + grating texture
    shade_angle, texture_angle = p["shade_angle"], p["texture_angle"]
    surface = torch.stack(
        [
            p["gray"]
            - p["shade"] * (torch.cos(shade_angle) * p["cx"] + torch.sin(shade_angle) * p["cy"]),
            p["shade"] * torch.cos(shade_angle),
            p["shade"] * torch.sin(shade_angle),
            p["texture"],
            2 * math.pi * p["texture_freq"] * torch.cos(texture_angle),
            2 * math.pi * p["texture_freq"] * torch.sin(texture_angle),
        ],
        -1,
    )[top.clamp_min(0)]  # (B, H, W, 6)
    grid = torch.arange(size, dtype=torch.float32, device=device)
    ys, xs = grid[:, None], grid[None, :]
    value = surface[..., 0] + surface[..., 1] * xs + surface[..., 2] * ys
    value = value + surface[..., 3] * torch.sin(surface[..., 4] * xs + surface[..., 5] * ys)
    return value, top >= 0


def make_scenes(
    n_images: int, size: int, seed: np.random.SeedSequence, split: str, device=None
) -> tuple:
    """``n_images`` scenes in the aperture: ``float32 (n, size, size)`` in [0, 1], and their ids.

    Scene k draws everything from its own stream (``seed.spawn``), so a scene does not change when
    more scenes are made, and its id ``"scene:<split>:<k>"`` names it. ``device``: where the
    objects are painted (a GPU is faster; the result is the same up to rounding).
    """
    streams = [np.random.default_rng(s) for s in seed.spawn(n_images)]
    images = np.empty((n_images, size, size), dtype=np.float32)
    for start in range(0, n_images, 64):
        chunk = streams[start : start + 64]
        params = [scene_parameters(rng, size) for rng in chunk]
        values, covered = (t.cpu().numpy() for t in render_scenes(params, size, device))
        for i, rng in enumerate(chunk):
            noise = pink_noise(2, size, rng)
            surround = params[i]["background"][0] + 0.08 * noise[0]  # a 1/f textured background
            image = np.where(covered[i], values[i], surround) + 0.03 * noise[1]
            image = _blur(image, params[i]["blur"][0])
            images[start + i] = normalise_contrast(image[None], rng)[0]
    return apply_aperture(images), [f"scene:{split}:{k}" for k in range(n_images)]


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of std ``sigma`` pixels (Fourier domain, periodic)."""
    size = image.shape[-1]
    f2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2
    gain = np.exp(-2 * np.pi**2 * f2 * sigma**2)
    return np.fft.irfft2(np.fft.rfft2(image) * gain, s=(size, size)).astype(np.float32)

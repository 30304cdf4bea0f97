"""Interactive plotly figures over lists of :class:`~etecrm_lib.evaluation.EncodingResult`.

Every figure works in a static web page with no Python behind it: choosing an ROI, a model or a
top-N value is done with plotly's own drop-down menus and sliders (``updatemenus``/``sliders``),
which only switch the visibility of traces that are all stored in the figure. In Jupyter or Colab
the same figures are interactive too; :mod:`etecrm_lib.widgets` adds an ipywidgets dashboard.

The functions return a ``plotly.graph_objects.Figure``; show it by leaving it as the last
expression of a cell (the book never chooses a plotly renderer: the build and Colab choose theirs).

>>> fig = model_scatter(results, "gwp_ridge", "etecrm")   # one dot per voxel, a menu of ROIs
"""

from __future__ import annotations

import zlib

import numpy as np

from .device import describe_device
from .evaluation import STATISTICS, TOP_N, EncodingResult, roi_statistic
from .results import describe_results

# --------------------------------------------------------------------------- one colour per model
MODEL_COLOURS = {
    "etecrm": "#1f77b4",  # blue: the released design
    "etecrm_unweighted": "#ff7f0e",  # orange
    "etecrm_no_noise": "#2ca02c",  # green
    "etecrm_signed": "#9467bd",  # purple
    "etecrm_mse": "#8c564b",  # brown
    "gwp_ridge": "#d62728",  # red: the Gabor two-step baseline
    "alexnet_ridge": "#e377c2",  # pink
    "gwp_roiwise": "#7f7f7f",  # grey
}
"""The book's one palette: a model has the same colour in every figure of every chapter."""

EXTRA_COLOURS = ("#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def model_colour(model: str) -> str:
    """The colour of ``model`` in every figure (:data:`MODEL_COLOURS`).

    Suffixes that name a form of the same model keep its colour ("alexnet_ridge_untrained",
    "etecrm (seed ensemble)", "etecrm, seed 2"); any other name gets a fixed colour of its own.
    """
    name = str(model)
    for base in sorted(MODEL_COLOURS, key=len, reverse=True):
        if name == base or name.startswith((base + "_untrained", base + " ", base + ",")):
            return MODEL_COLOURS[base]
    return EXTRA_COLOURS[zlib.crc32(name.encode()) % len(EXTRA_COLOURS)]


# --------------------------------------------------------------------------- small shared pieces
def _go():
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn

    return go


def _ordered(values) -> list:
    """Unique values in first-seen order."""
    return list(dict.fromkeys(values))


def _check_results(results) -> list:
    results = list(results)
    if not results:
        raise ValueError("no results to plot: pass a non-empty list of EncodingResult")
    for res in results:
        if not isinstance(res, EncodingResult):
            raise TypeError(f"expected EncodingResult objects, got {type(res).__name__}")
    return results


def _find(results, model: str, roi: str) -> EncodingResult | None:
    for res in results:
        if res.model == model and res.roi == roi:
            return res
    return None


def visibility(groups: list, chosen) -> list:
    """The ``visible`` mask of a figure whose i-th trace belongs to ``groups[i]``: True where it is
    ``chosen``."""
    return [group == chosen for group in groups]


def _menu(
    labels: list,
    masks: list,
    titles: list | None = None,
    x: float = 1.0,
    y: float = 1.12,
    active: int = 0,
) -> dict:
    """A drop-down menu whose i-th button shows the traces where ``masks[i]`` is True."""
    buttons = []
    for i, (label, mask) in enumerate(zip(labels, masks)):
        args = [{"visible": list(mask)}]
        if titles is not None:
            args.append({"title.text": titles[i]})
        buttons.append({"label": str(label), "method": "update", "args": args})
    return {
        "buttons": buttons,
        "direction": "down",
        "showactive": True,
        "active": active,
        "x": x,
        "xanchor": "right",
        "y": y,
        "yanchor": "bottom",
    }


# --------------------------------------------------------------------------- profile labels
# Every figure of the book says what produced it: "profile: quick · device: cpu (2 threads) · seeds:
# 0" for the live run of the page, "committed full run · profile: full · device: NVIDIA H100 ·
# seeds: 0" for results read from data/results. The label is the title's second line, so drop-down
# menus that change the title keep it (label_figure patches them too); tests/test_book.py requires
# it on every figure.
LABEL_MARK = "profile: "


def profile_label(
    profile: str, device: str | None = None, seeds=None, committed: bool = False
) -> str:
    """The label text, e.g. ``"profile: quick · device: cpu (2 threads) · seeds: 0"``.

    ``device`` defaults to this machine's (``device.describe_device``); ``seeds`` is an int or a
    list. ``committed=True`` marks results read from the committed full-profile run
    (``data/results``).
    """
    if profile is None:
        raise ValueError(
            "profile_label needs the profile that produced the figure ('quick' or 'full')"
        )
    if device is None and not committed:
        device = describe_device()
    parts = [f"{LABEL_MARK}{profile}"]
    if device:
        parts.append(f"device: {device}")
    if seeds is not None:
        seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
        parts.append(
            f"seed{'s' if len(seeds) != 1 else ''}: {', '.join(str(int(s)) for s in seeds)}"
        )
    text = " · ".join(parts)
    return f"committed {profile} run · {text}" if committed else text


def _with_label(title, label: str) -> str:
    title = "" if title is None else str(title)
    title = title.split("<br><sup>")[0]  # relabelling replaces an old label
    return f"{title}<br><sup>{label}</sup>" if title else f"<sup>{label}</sup>"


def label_figure(
    fig,
    profile: str | None = None,
    device: str | None = None,
    seeds=None,
    results=None,
    committed: bool | None = None,
    label: str | None = None,
):
    """Stamp the profile label on ``fig`` (second line of its title) and return ``fig``.

    Give ``profile`` (and optionally ``device``, ``seeds``), or ``results`` (EncodingResults whose
    ``info`` holds profile, device and seed; ``committed`` then defaults to True when they were read
    from a results file), or a ready ``label`` string. Drop-down menus and sliders that change the
    title keep the label.

    >>> label_figure(plots.roi_bars(results), profile=PROFILE, seeds=SEED)
    """
    if label is None:
        if results is not None:
            results = list(results)
            found = describe_results(results)
            profile = profile or found["profile"]
            device = device or found["device"]
            seeds = seeds if seeds is not None else found["seeds"]
            if committed is None:
                committed = any("results_file" in r.info for r in results)
        label = profile_label(profile, device, seeds, committed=bool(committed))
    title = fig.layout.title.text
    fig.update_layout(title_text=_with_label(title, label))
    if (fig.layout.margin.t or 0) < 90:
        fig.update_layout(margin_t=90)
    for control in list(fig.layout.updatemenus) + list(fig.layout.sliders):
        for button in (control.buttons if hasattr(control, "buttons") else control.steps) or []:
            args = list(button.args or [])
            if len(args) > 1 and isinstance(args[1], dict) and "title.text" in args[1]:
                args[1] = {**args[1], "title.text": _with_label(args[1]["title.text"], label)}
                button.args = args
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["profile_label"] = label
    fig.layout.meta = meta
    return fig


# --------------------------------------------------------------------------- data figures
def image_grid(images, n: int = 16, columns: int = 8, titles=None, title: str = "Stimulus images"):
    """A grid of the first ``n`` grayscale images ``(N, H, W)`` in [0, 1] (0 = black, 1 = white)."""
    go = _go()
    from plotly.subplots import make_subplots

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W) grayscale, got shape {images.shape}")
    n = min(n, images.shape[0])
    rows = int(np.ceil(n / columns))
    titles = (
        [str(t) for t in titles[:n]] if titles is not None else [f"image {i}" for i in range(n)]
    )
    fig = make_subplots(
        rows=rows,
        cols=min(columns, n),
        subplot_titles=titles,
        horizontal_spacing=0.01,
        vertical_spacing=0.06,
    )
    for i in range(n):
        fig.add_trace(
            go.Heatmap(
                z=images[i][::-1],
                colorscale="gray",
                zmin=0,
                zmax=1,
                showscale=False,
                hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, constrain="domain")
    for k in range(1, n + 1):  # square pixels: each y axis is tied to its own subplot's x axis
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(title=title, height=140 * rows + 80, margin=dict(l=10, r=10, t=70, b=10))
    fig.update_annotations(font_size=10)
    return fig


def roi_scatter(
    x: dict,
    y: dict,
    x_label: str,
    y_label: str,
    title: str = "",
    diagonal: bool = True,
    hover: dict | None = None,
):
    """One scatter per ROI (``x[roi]``, ``y[roi]`` are ``(V,)`` arrays), a drop-down menu picks the
    ROI.

    With ``diagonal`` a dashed y = x line is drawn for each ROI (it belongs to that ROI's traces).
    Hovering a dot shows ``hover[roi][i]`` (default: "voxel i", the voxel's column in the ROI).
    """
    go = _go()
    rois = [roi for roi in x if roi in y]
    if not rois:
        raise ValueError(f"x and y share no ROI (x has {list(x)}, y has {list(y)})")
    fig, groups = go.Figure(), []
    for k, roi in enumerate(rois):
        xs, ys = np.asarray(x[roi], dtype=float), np.asarray(y[roi], dtype=float)
        if xs.shape != ys.shape:
            raise ValueError(f"ROI '{roi}': x has {xs.shape} values and y has {ys.shape}")
        text = (
            [f"voxel {i}" for i in range(xs.size)]
            if hover is None
            else [str(t) for t in hover[roi]]
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=f"{roi} ({xs.size} voxels)",
                text=text,
                marker=dict(size=5, opacity=0.6),
                visible=k == 0,
                hovertemplate=f"%{{text}}<br>{x_label}: %{{x:.3f}}<br>{y_label}: "
                f"%{{y:.3f}}<extra>{roi}</extra>",
            )
        )
        groups.append(roi)
        if diagonal:
            lo = float(min(xs.min(), ys.min(), 0.0))
            hi = float(max(xs.max(), ys.max(), 0.0))
            fig.add_trace(
                go.Scatter(
                    x=[lo, hi],
                    y=[lo, hi],
                    mode="lines",
                    name="y = x",
                    visible=k == 0,
                    line=dict(dash="dash", color="gray"),
                    hoverinfo="skip",
                )
            )
            groups.append(roi)
    titles = [f"{title} — {roi}" if title else roi for roi in rois]
    fig.update_layout(
        title=titles[0],
        xaxis_title=x_label,
        yaxis_title=y_label,
        height=520,
        updatemenus=[_menu(rois, [visibility(groups, roi) for roi in rois], titles)],
        margin=dict(t=110),
    )
    fig.layout.meta = {"trace_groups": groups}
    return fig


def volume_slices(
    values: dict,
    voxels: dict,
    title: str = "",
    colorbar_title: str = "",
    axis: int = 2,
    zmin: float | None = None,
    zmax: float | None = None,
):
    """A brain map: per-voxel ``values[roi]`` drawn in the functional volume, one slice at a time.

    ``voxels[roi]`` is the ROI's :class:`~etecrm_lib.data.dataset.VoxelInfo` (its ``coords`` place
    each value). A slider picks the slice along ``axis`` (2 = axial for vim-1's 64x64x18 volume);
    voxels outside the ROIs are blank. Returns the figure; ``volume_array`` gives the volume itself.
    """
    go = _go()
    volume = volume_array(values, voxels)
    filled = np.flatnonzero(np.isfinite(volume).any(axis=tuple(a for a in range(3) if a != axis)))
    if filled.size == 0:
        raise ValueError("no voxel to draw: values are all NaN")
    zmin = float(np.nanmin(volume)) if zmin is None else zmin
    zmax = float(np.nanmax(volume)) if zmax is None else zmax
    # show only the box around the drawn voxels (plus a 2-voxel margin), in volume coordinates
    ranges = []
    for a in (a for a in range(3) if a != axis):
        used = np.flatnonzero(np.isfinite(volume).any(axis=tuple(b for b in range(3) if b != a)))
        ranges.append(np.arange(max(used.min() - 2, 0), min(used.max() + 3, volume.shape[a])))
    fig = go.Figure()
    for k, index in enumerate(filled):
        plane = np.take(volume, index, axis=axis)[
            np.ix_(ranges[0], ranges[1])
        ].T  # rows = second remaining axis
        fig.add_trace(
            go.Heatmap(
                z=plane,
                x=ranges[0],
                y=ranges[1],
                zmin=zmin,
                zmax=zmax,
                colorscale="Viridis",
                visible=k == 0,
                colorbar=dict(title=colorbar_title),
                name=f"slice {index}",
                hovertemplate="i %{x}, j %{y}: %{z:.3f}<extra></extra>",
            )
        )
    steps = [
        {
            "label": str(index),
            "method": "update",
            "args": [{"visible": [j == k for j in range(len(filled))]}],
        }
        for k, index in enumerate(filled)
    ]
    fig.update_layout(
        title=title,
        height=560,
        sliders=[
            {"active": 0, "steps": steps, "currentvalue": {"prefix": f"slice (axis {axis}): "}}
        ],
    )
    fig.update_yaxes(scaleanchor="x")
    return fig


def volume_array(values: dict, voxels: dict) -> np.ndarray:
    """A float32 volume (``volume_shape``) holding ``values[roi]`` at the ROI's voxels, NaN
    elsewhere."""
    shapes = {tuple(voxels[roi].volume_shape) for roi in values}
    if len(shapes) != 1:
        raise ValueError(f"the ROIs lie in volumes of different shapes: {shapes}")
    volume = np.full(shapes.pop(), np.nan, dtype=np.float32)
    for roi, v in values.items():
        coords = voxels[roi].coords
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        if v.size != coords.shape[0]:
            raise ValueError(f"ROI '{roi}': {v.size} values for {coords.shape[0]} voxels")
        volume[coords[:, 0], coords[:, 1], coords[:, 2]] = v
    return volume


# --------------------------------------------------------------------------- comparing models
def model_scatter(results, model_a: str, model_b: str):
    """Per-voxel test r of ``model_a`` (x) against ``model_b`` (y), one ROI at a time (drop-down).

    Dots above the diagonal are voxels that ``model_b`` predicts better.
    """
    results = _check_results(results)
    x, y = {}, {}
    for roi in _ordered(r.roi for r in results):
        a, b = _find(results, model_a, roi), _find(results, model_b, roi)
        if a is not None and b is not None:
            x[roi], y[roi] = a.test_r, b.test_r
    if not x:
        raise ValueError(
            f"no ROI has results for both '{model_a}' and '{model_b}'; "
            f"models present: {_ordered(r.model for r in results)}"
        )
    return roi_scatter(
        x, y, f"r of {model_a}", f"r of {model_b}", title=f"{model_b} vs {model_a}, per voxel"
    )


def accuracy_vs_ceiling(results, ceiling: str = "noise"):
    """Per-voxel test r against the voxel's noise ceiling; a drop-down picks the ROI, the legend the
    models.

    ``ceiling`` is "noise" (estimated from the test repeats) or "oracle" (simulation only). A voxel
    on the diagonal is predicted as well as its noise allows.
    """
    go = _go()
    results = _check_results(results)
    if ceiling not in ("noise", "oracle"):
        raise ValueError(f"ceiling must be 'noise' or 'oracle', got {ceiling!r}")
    attr = "noise_ceiling" if ceiling == "noise" else "oracle_ceiling"
    usable = [r for r in results if getattr(r, attr) is not None]
    if not usable:
        raise ValueError(
            f"none of the results has a {attr.replace('_', ' ')} (vim-1 has no test repeats: "
            "use the simulation, or compare models with model_scatter instead)"
        )
    rois = _ordered(r.roi for r in usable)
    fig, groups = go.Figure(), []
    for roi in rois:
        for res in (r for r in usable if r.roi == roi):
            c = np.asarray(getattr(res, attr), dtype=float)
            fig.add_trace(
                go.Scatter(
                    x=c,
                    y=np.asarray(res.test_r, dtype=float),
                    mode="markers",
                    name=res.model,
                    marker=dict(size=5, opacity=0.6, color=model_colour(res.model)),
                    visible=roi == rois[0],
                    text=[f"voxel {i}" for i in range(c.size)],
                    hovertemplate="%{text}<br>ceiling %{x:.3f}<br>r %{y:.3f}<extra>"
                    + res.model
                    + "</extra>",
                )
            )
            groups.append(roi)
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="r = ceiling",
                visible=roi == rois[0],
                line=dict(dash="dash", color="gray"),
                hoverinfo="skip",
            )
        )
        groups.append(roi)
    label = "noise ceiling (estimated)" if ceiling == "noise" else "noise ceiling (oracle, exact)"
    titles = [f"Accuracy vs {label} — {roi}" for roi in rois]
    fig.update_layout(
        title=titles[0],
        xaxis_title=label,
        yaxis_title="test r",
        height=520,
        margin=dict(t=110),
        updatemenus=[_menu(rois, [visibility(groups, roi) for roi in rois], titles)],
    )
    fig.layout.meta = {"trace_groups": groups}
    return fig


def roi_bars(results, statistic: str = "median_r", intervals: dict | None = None, top_ns=None):
    """Bars per ROI, one colour per model, of a summary of the per-voxel test r.

    Parameters
    ----------
    statistic : "median_r", "mean_r" or "top_n_mean_r"
    intervals : optional dict ``(model, roi) -> (low, high)`` (e.g. from
        :func:`evaluation.bootstrap_interval`), drawn as error bars (only for a single top-N).
    top_ns : for "top_n_mean_r", the N values a slider offers (default: 50, 100, 300, 1000, all
        capped at the largest ROI); each slider step shows its own set of bars.
    """
    go = _go()
    results = _check_results(results)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {list(STATISTICS)}, got {statistic!r}")
    models, rois = _ordered(r.model for r in results), _ordered(r.roi for r in results)
    if statistic == "top_n_mean_r":
        largest = max(r.n_voxels for r in results)
        top_ns = sorted({min(int(n), largest) for n in (top_ns or (50, 100, TOP_N, 1000))})
    else:
        top_ns = [TOP_N]
    fig, groups = go.Figure(), []
    for k, top_n in enumerate(top_ns):
        for model in models:
            ys, lows, highs = [], [], []
            for roi in rois:
                res = _find(results, model, roi)
                value = np.nan if res is None else roi_statistic(res, statistic, top_n)
                ys.append(value)
                low, high = (intervals or {}).get((model, roi), (value, value))
                lows.append(value - low)
                highs.append(high - value)
            error = dict(type="data", array=highs, arrayminus=lows, visible=bool(intervals))
            fig.add_trace(
                go.Bar(
                    x=rois,
                    y=ys,
                    name=model,
                    marker_color=model_colour(model),
                    error_y=error,
                    visible=k == 0,
                    legendgroup=model,
                    showlegend=True,
                    hovertemplate="%{x}: %{y:.3f}<extra>" + model + "</extra>",
                )
            )
            groups.append(top_n)
    y_label = STATISTICS[statistic].replace("top-N", f"top-{top_ns[0]}")
    layout = dict(
        barmode="group",
        title=f"{STATISTICS[statistic]} per ROI (held-out test images)",
        yaxis_title=y_label,
        height=480,
    )
    if len(top_ns) > 1:
        steps = [
            {
                "label": str(n),
                "method": "update",
                "args": [
                    {"visible": visibility(groups, n)},
                    {"yaxis.title.text": f"mean r of the top-{n} voxels"},
                ],
            }
            for n in top_ns
        ]
        layout["sliders"] = [
            {
                "active": 0,
                "steps": steps,
                "currentvalue": {"prefix": "top-N voxels: "},
                "pad": {"t": 40},
            }
        ]
    fig.update_layout(**layout)
    fig.layout.meta = {"trace_groups": groups}
    return fig


def comparison_bars(comparisons):
    """Model A minus model B per ROI with its 95% paired-bootstrap interval
    (``evaluation.Comparison`` list).

    A bar whose interval lies entirely above 0 is an ROI where A is reliably better.
    """
    go = _go()
    comparisons = list(comparisons)
    if not comparisons:
        raise ValueError("no comparisons to plot: pass a list of evaluation.Comparison")
    pairs = _ordered((c.model_a, c.model_b) for c in comparisons)
    shared_a = len({a for a, _ in pairs}) < len(pairs)  # then B tells the pairs apart
    fig = go.Figure()
    for a, b in pairs:
        cs = [c for c in comparisons if (c.model_a, c.model_b) == (a, b)]
        fig.add_trace(
            go.Bar(
                x=[c.roi for c in cs],
                y=[c.difference for c in cs],
                name=f"{a} − {b}",
                marker_color=model_colour(b if shared_a else a),
                error_y=dict(
                    type="data",
                    array=[c.ci_high - c.difference for c in cs],
                    arrayminus=[c.difference - c.ci_low for c in cs],
                ),
                customdata=[[c.ci_low, c.ci_high, c.p_a_not_better] for c in cs],
                hovertemplate="%{x}: %{y:+.3f} [%{customdata[0]:+.3f}, %{customdata[1]:+.3f}], p = "
                "%{customdata[2]:.3f}",
            )
        )
    statistic = STATISTICS.get(comparisons[0].statistic, comparisons[0].statistic)
    fig.add_hline(y=0, line_color="gray")
    fig.update_layout(
        barmode="group",
        title=f"Difference in {statistic} with 95% paired bootstrap intervals",
        yaxis_title=f"difference in {statistic}",
        height=460,
    )
    return fig

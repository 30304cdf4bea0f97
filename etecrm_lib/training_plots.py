"""Figures of training, one per idea the training chapters show (plotly, like
:mod:`etecrm_lib.plots`).

Curves per epoch (:func:`training_curves`), accuracy against training-set size
(:func:`learning_curves`), why noise on the predictions makes correlation training selective
(:func:`noisy_correlation_curves`), the self-adapting weights epoch by epoch
(:func:`weights_over_epochs`) and what training cost (:func:`training_cost_bars`). The numbers come
from :mod:`etecrm_lib.evaluation` (``expected_noisy_r``) and :mod:`etecrm_lib.tables`
(``training_seconds``); these functions only draw.
"""

from __future__ import annotations

import numpy as np

from .evaluation import expected_noisy_r
from .plots import MODEL_COLOURS, model_colour


def training_curves(
    curves, x_label: str = "epoch", y_label: str = "loss", title: str = "Training curves"
):
    """Lines of per-epoch numbers: ``curves`` is a dict ``name -> list of floats`` (or one list).

    Example: ``training_curves({"train loss": history["train"], "validation r":
    history["val_r"]})``. Epochs are numbered from 1.
    """
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn

    if not isinstance(curves, dict):
        curves = {y_label: curves}
    if not curves:
        raise ValueError("no curves to plot")
    fig = go.Figure()
    for name, values in curves.items():
        values = np.asarray(values, dtype=float).reshape(-1)
        # a curve named after a model ("etecrm_mse", "etecrm, validation r") takes its colour
        model = str(name).split(",")[0].split(" ")[0]
        line = {"color": model_colour(model)} if model in MODEL_COLOURS else {}
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, values.size + 1),
                y=values,
                mode="lines+markers",
                name=str(name),
                line=line,
            )
        )
    fig.update_layout(title=title, xaxis_title=x_label, yaxis_title=y_label, height=420)
    return fig


def learning_curves(rows, title: str = "Accuracy against training-set size"):
    """Median test r against the number of train images, one panel per ROI, a line per model.

    ``rows``: :func:`etecrm_lib.data_size.learning_curves` (or ``curves.json``'s ``"curves"``):
    dicts with ``roi, model, n_train, median_r, ci_low, ci_high``. The shaded band is the 95 %
    interval over test images and model seeds; the x axis is logarithmic.
    """
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn
    from plotly.subplots import make_subplots

    rows = list(rows)
    if not rows:
        raise ValueError("no learning-curve rows to plot")
    rois, models = (
        list(dict.fromkeys(r["roi"] for r in rows)),
        list(dict.fromkeys(r["model"] for r in rows)),
    )
    fig = make_subplots(rows=1, cols=len(rois), subplot_titles=rois, shared_yaxes=True)
    sizes = sorted({int(r["n_train"]) for r in rows})
    for col, roi in enumerate(rois, start=1):
        for model in models:
            line = sorted(
                (r for r in rows if r["roi"] == roi and r["model"] == model),
                key=lambda r: r["n_train"],
            )
            if not line:
                continue
            x = [r["n_train"] for r in line]
            color = model_colour(model)
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=[r["ci_high"] for r in line] + [r["ci_low"] for r in line][::-1],
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=model,
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[r["median_r"] for r in line],
                    mode="lines+markers",
                    name=model,
                    line={"color": color},
                    legendgroup=model,
                    showlegend=col == 1,
                    hovertemplate=f"{model}, {roi}<br>%{{x}} train images: median r %{{y:.3f}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
        # a log axis labelled at the sizes that were run only (no unreadable minor ticks)
        fig.update_xaxes(
            type="log",
            tickvals=sizes,
            ticktext=[f"{n:,}" for n in sizes],
            tickangle=-45,
            minor=dict(showgrid=False, ticks=""),
            title_text="train images",
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="median test r", row=1, col=1)
    fig.update_layout(title=title, height=420)
    return fig


def noisy_correlation_curves(signal_rs=(0.0, 0.1, 0.3, 0.6), scales=None, noise_std: float = 1.0):
    """Why fixed-size noise on the predictions makes correlation training selective (two panels).

    For voxels whose best prediction correlates ``signal_r`` with the response, the expected r of a
    prediction of size ``scale`` (s.d. over images) after adding noise of s.d. ``noise_std``
    (:func:`evaluation.expected_noisy_r`), and its cube, the voxel's term in ``-loss = mean(r^3)``.
    A voxel with no signal gains nothing from a larger prediction; a predictable one gains a lot.
    """
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn
    from plotly.subplots import make_subplots

    scales = (
        np.linspace(0, 5 * max(noise_std, 1e-3), 101)
        if scales is None
        else np.asarray(scales, dtype=float)
    )
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("expected r with the noise", "its cube: the voxel's gain in -loss"),
    )
    palette = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for k, signal_r in enumerate(signal_rs):
        r = expected_noisy_r(signal_r, scales, noise_std)
        style = dict(color=palette[k % len(palette)])
        name = f"voxel with r = {signal_r:g} without noise"
        fig.add_trace(
            go.Scatter(
                x=scales,
                y=r,
                mode="lines",
                name=name,
                line=style,
                legendgroup=name,
                hovertemplate="scale %{x:.2f}: r %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=scales,
                y=r**3,
                mode="lines",
                name=name,
                line=style,
                legendgroup=name,
                showlegend=False,
                hovertemplate="scale %{x:.2f}: r³ %{y:.4f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text=f"prediction scale (s.d. over images; noise s.d. {noise_std:g})")
    fig.update_yaxes(title_text="r", row=1, col=1)
    fig.update_yaxes(title_text="r³", row=1, col=2)
    fig.update_layout(
        title="Fixed-size noise on the predictions: what a larger prediction buys, per voxel",
        height=440,
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def weights_over_epochs(
    train_r, order=None, best_epoch: int | None = None, sort_label: str = "noise ceiling"
):
    """Heatmap of the self-adapting weights ``r_v^2`` per epoch: rows voxels, columns epochs.

    ``train_r``: ``(E, V)`` per-epoch training r (``TrainingHistory.train_r``); ``order``: voxel
    order (e.g. ``np.argsort(ceiling)``, best at the top); ``best_epoch`` (0-based) is marked.
    """
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn

    weights = np.asarray(train_r, dtype=float) ** 2
    if weights.ndim != 2:
        raise ValueError(f"train_r must be (epochs, voxels), got shape {weights.shape}")
    order = np.arange(weights.shape[1]) if order is None else np.asarray(order)
    fig = go.Figure(
        go.Heatmap(
            z=weights[:, order].T,
            x=np.arange(1, weights.shape[0] + 1),
            colorscale="Viridis",
            colorbar=dict(title="r²"),
            hovertemplate="epoch %{x}, voxel rank %{y}: r² %{z:.3f}<extra></extra>",
        )
    )
    if best_epoch is not None and best_epoch >= 0:
        fig.add_vline(x=best_epoch + 1, line_dash="dot", line_color="white")
    fig.update_layout(
        title="Self-adapting weights r² of every voxel, epoch by epoch (dotted: the kept epoch)",
        xaxis_title="epoch",
        yaxis_title=f"voxels sorted by {sort_label} (highest at the top)",
        height=460,
    )
    return fig


def training_cost_bars(rows, value: str = "ms_per_voxel"):
    """Bars of training cost per model (rows of :func:`tables.training_seconds`), with ±1 s.d. over
    seeds for ``seconds_per_subject``. ``value``: "ms_per_voxel", "seconds_per_roi" or
    "seconds_per_subject"."""
    import plotly.graph_objects as go  # heavy optional import, only when a figure is drawn

    labels = {
        "ms_per_voxel": "training milliseconds per voxel",
        "seconds_per_roi": "training seconds per ROI",
        "seconds_per_subject": "training seconds per subject (all ROIs)",
    }
    if value not in labels:
        raise ValueError(f"value must be one of {list(labels)}, got {value!r}")
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to plot: pass tables.training_seconds(results)")
    error = None
    if value == "seconds_per_subject":
        error = dict(type="data", array=[r.get("seconds_per_subject_sd") or 0 for r in rows])
    fig = go.Figure(
        go.Bar(
            x=[r["model"] for r in rows],
            y=[r[value] for r in rows],
            error_y=error,
            text=[f"{r[value]:.3g}" for r in rows],
            textposition="outside",
            hovertemplate="%{x}: %{y:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"What training cost: {labels[value]}", yaxis_title=labels[value], height=420
    )
    return fig

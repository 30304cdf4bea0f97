"""ipywidgets for Jupyter and Colab: a dashboard over results, an image browser.

These need a running Python kernel to react (in the built book they show their first state;
the plotly figures of :mod:`etecrm_lib.plots` are the kernel-free interactive versions).
ipywidgets is imported inside the functions, so the rest of the library runs without it.
"""

from __future__ import annotations

import html
import io

import numpy as np

from .evaluation import TOP_N, EncodingResult, default_top_n, paired_bootstrap


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - ipywidgets is a dependency of the library
        raise ImportError("the dashboards need ipywidgets: pip install ipywidgets") from err
    return ipywidgets


def png_bytes(image) -> bytes:
    """A grayscale image ``(H, W)`` in [0, 1] as PNG bytes (for ``ipywidgets.Image``)."""
    from PIL import Image

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected one grayscale image (H, W), got shape {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def image_browser(images, captions=None, size_px: int = 256):
    """A slider over grayscale images ``(N, H, W)``; ``captions`` (N strings) are shown under each.

    Returns an ``ipywidgets.VBox`` (display it by leaving it last in a cell); ``.children[0]`` is
    the slider.
    """
    w = _ipywidgets()
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, H, W) array, got shape {images.shape}")
    captions = (
        [f"image {i}" for i in range(len(images))]
        if captions is None
        else [str(c) for c in captions]
    )
    if len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    slider = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    picture = w.Image(value=png_bytes(images[0]), format="png", width=size_px, height=size_px)
    caption = w.HTML(html.escape(captions[0]))

    def show(change):
        picture.value = png_bytes(images[change["new"]])
        caption.value = html.escape(captions[change["new"]])

    slider.observe(show, names="value")
    return w.VBox([slider, picture, caption])


def scatter_png(x, y, x_label: str, y_label: str, title: str, dpi: int = 80) -> bytes:
    """A small matplotlib scatter of ``y`` against ``x`` with the diagonal, as PNG bytes.

    (A static picture: it is stored in the widget's state and so also shows in the built book.)
    """
    from matplotlib.figure import Figure  # no pyplot: the notebook's plotting state is left alone

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig = Figure(figsize=(5, 5), dpi=dpi)
    ax = fig.add_subplot()
    ax.scatter(x, y, s=6, alpha=0.5)
    lo, hi = min(x.min(), y.min(), 0.0), max(x.max(), y.max(), 0.0)
    ax.plot([lo, hi], [lo, hi], "--", color="gray", lw=1)
    ax.set(xlabel=x_label, ylabel=y_label, title=title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def summary_html(results, top_n: int = TOP_N) -> str:
    """An HTML table, one row per result: voxels, median r, top-N mean r, fraction of the noise
    ceiling."""
    rows = []
    for res in results:
        row = res.summary(top_n)
        frac = row["frac_ceiling"]
        rows.append(
            f"<tr><td>{html.escape(res.model)}</td><td>{html.escape(res.roi)}</td><td>{res.n_voxels}</td>"
            f"<td>{row['median_r']:.3f}</td><td>{row[f'top{top_n}_mean_r']:.3f}</td>"
            f"<td>{'—' if np.isnan(frac) else f'{frac:.2f}'}</td></tr>"
        )
    head = (
        f"<tr><th>model</th><th>ROI</th><th>voxels</th><th>median r</th><th>top-{top_n} mean r</th>"
        "<th>fraction of ceiling</th></tr>"
    )
    return f"<table class='etecrm-summary'>{head}{''.join(rows)}</table>"


def dashboard(results, responses: dict | None = None, n_bootstrap: int = 500):
    """Compare models interactively: pick an ROI, two models and a top-N; see a table and a scatter.

    Parameters
    ----------
    results : list of EncodingResult (several models, several ROIs)
    responses : optional dict ``roi -> (N_test, V)`` measured test responses; with it (and kept
        predictions) the dashboard adds the paired bootstrap difference of the two models.
    n_bootstrap : resamples for that interval.

    Returns an ``ipywidgets.VBox``; its ``controls`` attribute holds the widgets by name
    (``roi``, ``model_a``, ``model_b``, ``top_n``) and ``table`` / ``plot`` the outputs.
    """
    w = _ipywidgets()
    results = list(results)
    if not results or not all(isinstance(r, EncodingResult) for r in results):
        raise ValueError("dashboard needs a non-empty list of EncodingResult")
    rois = list(dict.fromkeys(r.roi for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    controls = {
        "roi": w.Dropdown(options=rois, value=rois[0], description="ROI"),
        "model_a": w.Dropdown(options=models, value=models[0], description="model A"),
        "model_b": w.Dropdown(options=models, value=models[-1], description="model B"),
        "top_n": w.IntSlider(
            value=default_top_n(max(r.n_voxels for r in results)),
            min=1,
            max=max(r.n_voxels for r in results),
            description="top-N",
        ),
    }
    table = w.HTML()
    plot = w.Image(format="png", width=420)

    def update(_change=None):
        roi, a, b = controls["roi"].value, controls["model_a"].value, controls["model_b"].value
        chosen = [r for r in results if r.roi == roi and r.model in (a, b)]
        text = summary_html(sorted(chosen, key=lambda r: r.model != a), controls["top_n"].value)
        res_a = next((r for r in chosen if r.model == a), None)
        res_b = next((r for r in chosen if r.model == b), None)
        if res_a is None or res_b is None:
            text += (
                f"<p>No result for {'model A' if res_a is None else 'model B'} in "
                f"{html.escape(roi)}.</p>"
            )
        elif (
            responses is not None
            and roi in responses
            and a != b
            and res_a.predictions is not None
            and res_b.predictions is not None
        ):
            comparison = paired_bootstrap(res_a, res_b, responses[roi], n_bootstrap=n_bootstrap)
            text += f"<p>{html.escape(str(comparison))}</p>"
        table.value = text
        if res_a is not None and res_b is not None:
            plot.value = scatter_png(
                res_a.test_r, res_b.test_r, f"r of {a}", f"r of {b}", f"{roi}: per-voxel test r"
            )
        else:
            plot.value = b""

    for control in controls.values():
        control.observe(update, names="value")
    update()
    box = w.VBox(
        [
            w.HBox([controls["roi"], controls["top_n"]]),
            w.HBox([controls["model_a"], controls["model_b"]]),
            table,
            plot,
        ]
    )
    box.controls, box.table, box.plot = controls, table, plot
    return box

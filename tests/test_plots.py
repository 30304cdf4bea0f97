"""Figures and widgets over EncodingResults: structure, the data they draw, and menus that switch
correctly."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from etecrm_lib import evaluation, plots, training_plots, widgets
from etecrm_lib.data.dataset import VoxelInfo
from etecrm_lib.evaluation import EncodingResult

ROIS = {"V1": 40, "V2": 25, "V4": 12}
MODELS = ("gwp_ridge", "etecrm")
N_TEST = 30


@pytest.fixture(scope="module")
def data():
    """Synthetic test responses and two models' predictions per ROI (etecrm is the better one)."""
    rng = np.random.default_rng(0)
    responses, results = {}, []
    for roi, n_vox in ROIS.items():
        signal = rng.normal(size=(N_TEST, n_vox))
        repeats = signal + rng.normal(size=(4, N_TEST, n_vox))
        responses[roi] = repeats.mean(0).astype(np.float32)
        for model, noise in zip(MODELS, (2.0, 0.7)):
            pred = (signal + noise * rng.normal(size=signal.shape)).astype(np.float32)
            results.append(
                EncodingResult(
                    model,
                    roi,
                    "sim",
                    1,
                    evaluation.pearson_r(pred, responses[roi]),
                    noise_ceiling=evaluation.noise_ceiling(repeats),
                    oracle_ceiling=evaluation.pearson_r(signal, responses[roi]),
                    predictions=pred,
                )
            )
    return responses, results


def find(results, model, roi):
    return next(r for r in results if r.model == model and r.roi == roi)


def check_menu(fig, groups, labels):
    """Every button shows exactly the traces of its group, and the figure opens on the first one."""
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == [str(label) for label in labels]
    for button, label in zip(menu.buttons, labels):
        visible = button.args[0]["visible"]
        assert len(visible) == len(fig.data)
        assert visible == [g == label for g in groups]
    assert [bool(t.visible) for t in fig.data] == menu.buttons[0].args[0]["visible"]


def test_model_scatter_draws_each_roi_and_menu_switches(data):
    _, results = data
    fig = plots.model_scatter(results, "gwp_ridge", "etecrm")
    groups = fig.layout.meta["trace_groups"]
    assert groups == [roi for roi in ROIS for _ in range(2)]  # the voxels, then the diagonal
    check_menu(fig, groups, list(ROIS))
    for roi in ROIS:
        scatter = fig.data[groups.index(roi)]
        np.testing.assert_allclose(scatter.x, find(results, "gwp_ridge", roi).test_r, rtol=1e-6)
        np.testing.assert_allclose(scatter.y, find(results, "etecrm", roi).test_r, rtol=1e-6)
        assert scatter.text[3] == "voxel 3" and len(scatter.text) == ROIS[roi]
    assert "etecrm" in fig.layout.title.text


def test_model_scatter_names_available_models(data):
    _, results = data
    with pytest.raises(ValueError, match="models present: \\['gwp_ridge', 'etecrm'\\]"):
        plots.model_scatter(results, "gwp_ridge", "alexnet_ridge")
    with pytest.raises(ValueError, match="no results"):
        plots.model_scatter([], "a", "b")


@pytest.mark.parametrize(
    "ceiling, attr", [("noise", "noise_ceiling"), ("oracle", "oracle_ceiling")]
)
def test_accuracy_vs_ceiling(data, ceiling, attr):
    _, results = data
    fig = plots.accuracy_vs_ceiling(results, ceiling=ceiling)
    groups = fig.layout.meta["trace_groups"]
    assert groups == [
        roi for roi in ROIS for _ in range(len(MODELS) + 1)
    ]  # models, then the diagonal
    check_menu(fig, groups, list(ROIS))
    for i, (trace, roi) in enumerate(zip(fig.data, groups)):
        if trace.name in MODELS:
            res = find(results, trace.name, roi)
            np.testing.assert_allclose(trace.x, getattr(res, attr), rtol=1e-6)
            np.testing.assert_allclose(trace.y, res.test_r, rtol=1e-6)


def test_accuracy_vs_ceiling_without_ceiling_says_why(data):
    _, results = data
    vim1_like = [EncodingResult(r.model, r.roi, "vim1", 1, r.test_r) for r in results]
    with pytest.raises(ValueError, match="no test repeats"):
        plots.accuracy_vs_ceiling(vim1_like)
    with pytest.raises(ValueError, match="'noise' or 'oracle'"):
        plots.accuracy_vs_ceiling(results, ceiling="exact")


def test_roi_bars_heights_and_intervals(data):
    responses, results = data
    intervals = {
        (r.model, r.roi): evaluation.bootstrap_interval(r, responses[r.roi], n_bootstrap=200)
        for r in results
    }
    fig = plots.roi_bars(results, "median_r", intervals=intervals)
    assert [t.name for t in fig.data] == list(MODELS)
    for trace in fig.data:
        assert list(trace.x) == list(ROIS)
        for roi, y, plus, minus in zip(
            trace.x, trace.y, trace.error_y.array, trace.error_y.arrayminus
        ):
            res = find(results, trace.name, roi)
            assert y == pytest.approx(np.median(res.test_r))
            low, high = intervals[(trace.name, roi)]
            assert y + plus == pytest.approx(high) and y - minus == pytest.approx(low)
    with pytest.raises(ValueError, match="statistic must be one of"):
        plots.roi_bars(results, "max_r")


def test_roi_bars_top_n_slider(data):
    _, results = data
    fig = plots.roi_bars(results, "top_n_mean_r", top_ns=(5, 10, 1000))
    top_ns = [5, 10, 40]  # 1000 is capped at the largest ROI
    (slider,) = fig.layout.sliders
    assert [int(s.label) for s in slider.steps] == top_ns
    groups = fig.layout.meta["trace_groups"]
    for step, n in zip(slider.steps, top_ns):
        visible = step.args[0]["visible"]
        assert visible == [g == n for g in groups] and sum(visible) == len(MODELS)
        for trace, shown in zip(fig.data, visible):
            if shown:
                for roi, y in zip(trace.x, trace.y):
                    assert y == pytest.approx(
                        evaluation.roi_statistic(
                            find(results, trace.name, roi).test_r, "top_n_mean_r", n
                        )
                    )


def test_bootstrap_interval_matches_explicit_resampling(data):
    responses, results = data
    res = find(results, "etecrm", "V2")
    low, high = evaluation.bootstrap_interval(
        res, responses["V2"], "mean_r", n_bootstrap=300, seed=3
    )
    # the same resamples drawn explicitly, scored with scipy's pearsonr
    from scipy.stats import pearsonr

    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, N_TEST, (250, N_TEST), generator=gen).numpy().tolist()
    idx += torch.randint(0, N_TEST, (50, N_TEST), generator=gen).numpy().tolist()

    def mean_r(i):
        x, y = res.predictions[i].astype(np.float64), responses["V2"][i].astype(np.float64)
        x, y = x - x.mean(0), y - y.mean(0)
        return np.mean((x * y).sum(0) / np.sqrt((x * x).sum(0) * (y * y).sum(0)))

    first = np.array(idx[0])
    scipy_r = [
        pearsonr(res.predictions[first, v], responses["V2"][first, v])[0]
        for v in range(res.n_voxels)
    ]
    assert mean_r(first) == pytest.approx(np.mean(scipy_r))
    stats = [mean_r(np.array(i)) for i in idx]
    assert low == pytest.approx(np.quantile(stats, 0.025), abs=1e-6)
    assert high == pytest.approx(np.quantile(stats, 0.975), abs=1e-6)
    perfect = EncodingResult(
        "oracle", "V2", "sim", 1, np.ones(ROIS["V2"]), predictions=responses["V2"]
    )
    interval = evaluation.bootstrap_interval(perfect, responses["V2"], n_bootstrap=100)
    assert interval == pytest.approx((1.0, 1.0))


def test_comparison_bars_from_paired_bootstrap(data):
    responses, results = data
    comparisons = [
        evaluation.paired_bootstrap(
            find(results, "etecrm", roi),
            find(results, "gwp_ridge", roi),
            responses[roi],
            n_bootstrap=200,
        )
        for roi in ROIS
    ]
    fig = plots.comparison_bars(comparisons)
    (bars,) = fig.data
    assert list(bars.x) == list(ROIS)
    for c, y, plus, minus in zip(comparisons, bars.y, bars.error_y.array, bars.error_y.arrayminus):
        assert y == pytest.approx(c.difference)
        assert y + plus == pytest.approx(c.ci_high) and y - minus == pytest.approx(c.ci_low)


def test_training_curves_and_image_grid():
    fig = training_plots.training_curves(
        {"train loss": [0.9, 0.6, 0.5], "validation loss": [1.0, 0.8, 0.85]}
    )
    assert [t.name for t in fig.data] == ["train loss", "validation loss"]
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[1].y) == [1.0, 0.8, 0.85]
    assert list(training_plots.training_curves([3.0, 2.0]).data[0].y) == [3.0, 2.0]
    images = np.random.default_rng(1).uniform(size=(5, 8, 8)).astype(np.float32)
    grid = plots.image_grid(images, n=16, columns=4)
    assert len(grid.data) == 5
    np.testing.assert_allclose(grid.data[2].z, images[2][::-1])  # heatmap rows go upward
    # square pixels: every subplot's y axis is anchored to that subplot's own x axis
    for trace in grid.data:
        y_axis = grid.layout["yaxis" + trace.yaxis[1:]]
        assert y_axis.scaleanchor == trace.xaxis
    with pytest.raises(ValueError, match="grayscale"):
        plots.image_grid(np.zeros((2, 8, 8, 3)))


def test_volume_array_and_slices_put_values_where_voxels_are():
    shape = (6, 5, 4)
    # voxels given as 1-based MATLAB (column-major) indices, as vim-1 stores them
    coords = {"V1": [(0, 0, 1), (2, 3, 1)], "V2": [(5, 4, 3)]}
    voxels = {
        roi: VoxelInfo(np.ravel_multi_index(np.array(c).T, shape, order="F") + 1, shape, np.eye(4))
        for roi, c in coords.items()
    }
    values = {"V1": np.array([0.1, 0.2]), "V2": np.array([0.9])}
    volume = plots.volume_array(values, voxels)
    assert volume[0, 0, 1] == pytest.approx(0.1) and volume[2, 3, 1] == pytest.approx(0.2)
    assert volume[5, 4, 3] == pytest.approx(0.9) and np.isnan(volume).sum() == volume.size - 3
    fig = plots.volume_slices(values, voxels)
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["1", "3"]  # only slices holding voxels
    for k, step in enumerate(slider.steps):
        assert step.args[0]["visible"] == [j == k for j in range(2)]
    plane = np.asarray(fig.data[0].z, dtype=float)
    x, y = list(fig.data[0].x), list(fig.data[0].y)
    assert plane[y.index(3), x.index(2)] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="2 values for 1 voxels"):
        plots.volume_array({"V2": np.array([1.0, 2.0])}, voxels)


def test_dashboard_follows_its_controls(data):
    responses, results = data
    box = widgets.dashboard(results, responses=responses, n_bootstrap=100)
    controls = box.controls
    assert controls["roi"].options == tuple(ROIS) and controls["model_a"].value == "gwp_ridge"
    median = np.median(find(results, "etecrm", "V1").test_r)
    assert f"{median:.3f}" in box.table.value and "95% paired bootstrap" in box.table.value
    first_png = box.plot.value
    assert first_png[:8] == b"\x89PNG\r\n\x1a\n"
    controls["roi"].value = "V4"
    assert f"{np.median(find(results, 'etecrm', 'V4').test_r):.3f}" in box.table.value
    assert "<td>V1</td>" not in box.table.value and box.plot.value != first_png
    controls["top_n"].value = 3
    assert (
        f"{evaluation.roi_statistic(find(results, 'etecrm', 'V4').test_r, 'top_n_mean_r', 3):.3f}"
        in box.table.value
    )
    with pytest.raises(ValueError, match="non-empty list"):
        widgets.dashboard([])


def test_image_browser_and_png_roundtrip():
    from PIL import Image

    images = np.random.default_rng(2).uniform(size=(3, 6, 7)).astype(np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(widgets.png_bytes(images[1])))) / 255.0
    np.testing.assert_allclose(decoded, images[1], atol=0.5 / 255 + 1e-6)
    browser = widgets.image_browser(images, captions=["a", "b", "c"])
    slider, picture, caption = browser.children
    slider.value = 2
    assert picture.value == widgets.png_bytes(images[2]) and caption.value == "c"
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        widgets.image_browser(images, captions=["a", "b"])


# --------------------------------------------------------------------------- profile labels
def test_profile_label_text():
    assert (
        plots.profile_label("quick", "cpu (2 threads)", 0)
        == "profile: quick · device: cpu (2 threads) · seed: 0"
    )
    assert plots.profile_label("full", "NVIDIA H100", [0, 1, 2], committed=True) == (
        "committed full run · profile: full · device: NVIDIA H100 · seeds: 0, 1, 2"
    )
    assert plots.profile_label("quick").startswith(
        "profile: quick · device: "
    )  # this machine's device
    with pytest.raises(ValueError, match="profile"):
        plots.profile_label(None)


def test_label_figure_survives_menus_and_relabelling():
    fig = plots.roi_scatter(
        {"V1": np.arange(3.0), "V2": np.arange(3.0)},
        {"V1": np.arange(3.0), "V2": np.arange(3.0)},
        "a",
        "b",
        title="T",
    )
    assert plots.label_figure(fig, profile="quick", device="cpu", seeds=0) is fig
    label = "profile: quick · device: cpu · seed: 0"
    assert fig.layout.title.text == f"T — V1<br><sup>{label}</sup>"
    titles = [b.args[1]["title.text"] for b in fig.layout.updatemenus[0].buttons]
    assert titles == [f"T — V1<br><sup>{label}</sup>", f"T — V2<br><sup>{label}</sup>"]
    assert (
        fig.layout.meta["profile_label"] == label and fig.layout.meta["trace_groups"]
    )  # old meta kept
    plots.label_figure(
        fig, profile="full", device="gpu", seeds=[1, 2]
    )  # a new label replaces the old one
    assert fig.layout.title.text == "T — V1<br><sup>profile: full · device: gpu · seeds: 1, 2</sup>"
    assert fig.layout.margin.t >= 90


def test_label_figure_from_results():
    committed = EncodingResult(
        "etecrm",
        "V1",
        "sim",
        1,
        np.zeros(4),
        info={"profile": "full", "device": "NVIDIA H100", "seed": 0, "results_file": "x.npz"},
    )
    live = EncodingResult(
        "etecrm", "V1", "sim", 1, np.zeros(4), info={"device": "cpu (2 threads)", "seed": 3}
    )
    fig = plots.label_figure(plots.roi_bars([committed]), results=[committed])
    assert fig.layout.title.text.endswith(
        "<sup>committed full run · profile: full · device: NVIDIA H100 · seed: 0</sup>"
    )
    fig = plots.label_figure(plots.roi_bars([live]), results=[live], profile="quick")
    assert fig.layout.title.text.endswith(
        "<sup>profile: quick · device: cpu (2 threads) · seed: 3</sup>"
    )


def test_one_colour_per_model_in_every_figure():
    """A model keeps its colour in every figure: bars, comparison bars, seed bars, curves."""
    from etecrm_lib import figures, plots, tables, training_plots
    from etecrm_lib.evaluation import Comparison, EncodingResult

    rng = np.random.default_rng(0)
    results = [
        EncodingResult(m, roi, "sim", 1, rng.uniform(-0.1, 0.5, 30).astype(np.float32))
        for m in ("gwp_ridge", "etecrm", "etecrm_mse")
        for roi in ("V1", "LO")
    ]
    colour = plots.model_colour
    assert len(set(plots.MODEL_COLOURS.values())) == len(plots.MODEL_COLOURS)  # all different
    assert colour("alexnet_ridge_untrained") == colour("alexnet_ridge")
    assert colour("etecrm (seed ensemble)") == colour("etecrm") != colour("etecrm_mse")
    assert colour("a model of my own") == colour("a model of my own")  # fixed, not random
    bars = {t.name: t.marker.color for t in plots.roi_bars(results).data}
    assert bars == {m: colour(m) for m in ("gwp_ridge", "etecrm", "etecrm_mse")}
    flipped = {t.name: t.marker.color for t in plots.roi_bars(results[::-1]).data}
    assert flipped == bars  # the order of the models does not change their colours
    cmp = [Comparison("etecrm_mse", "etecrm", "V1", "median_r", 0.1, 0.0, 0.2, 0.1, 10)]
    assert plots.comparison_bars(cmp).data[0].marker.color == colour("etecrm_mse")
    rows = tables.seed_rows(results)
    assert {t.name: t.marker.color for t in figures.seed_bars(rows).data} == bars
    curves = [
        {"roi": "V1", "model": m, "n_train": n, "median_r": 0.1, "ci_low": 0.0, "ci_high": 0.2}
        for m in ("gwp_ridge", "etecrm")
        for n in (250, 1000, 7000)
    ]
    fig = training_plots.learning_curves(curves)
    lines = {t.name: t.line.color for t in fig.data if t.mode == "lines+markers"}
    assert lines == {m: colour(m) for m in ("gwp_ridge", "etecrm")}
    # a readable log axis: ticks at the sizes that were run, no minor ticks
    assert list(fig.layout.xaxis.tickvals) == [250, 1000, 7000]
    assert list(fig.layout.xaxis.ticktext) == ["250", "1,000", "7,000"]

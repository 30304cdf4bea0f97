"""Precision on a GPU: each precision forced, its training time and test accuracy; every chapter's
start-of-chapter estimate with bf16, fp16 and fp32 forced; a T4-class estimate for chapter 8.

    python benchmarks/bench_precision.py --out precision.json       # on a GPU (capability >= 8.0)

1. Accuracy and time: ETECRM (the quick simulation, V1, 20 epochs, the full network's 128 channels)
   trained with fp32, fp16 and bf16 forced, squared and signed read-out weights; each must train
   finite and reach fp32's median test r within ``tests/test_precision.ACCURACY_TOLERANCE``.
2. Each chapter's estimate (``estimates.chapter_estimate``, full profile), each precision forced.
3. A T4-class estimate: the forced fp16 / fp32 estimates times the ratio of the two cards' published
   peak throughputs (:data:`PEAK_TFLOPS`). Chapter 4's hand-written loop also runs once on the GPU.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from etecrm_lib import estimates  # noqa: E402
from etecrm_lib.data import simulate  # noqa: E402
from etecrm_lib.evaluation import pearson_r  # noqa: E402
from etecrm_lib.training import ETECRMConfig, fit_etecrm  # noqa: E402

PEAK_TFLOPS = {  # dense peak throughput, NVIDIA's datasheets
    "T4": {"fp16": 65.0, "fp32": 8.1},  # NVIDIA T4 Tensor Core GPU datasheet
    "H100 SXM": {"fp16": 989.4, "fp32": 66.9},  # NVIDIA H100 datasheet (SXM5; H200 the same)
    "H100 PCIe": {"fp16": 756.0, "fp32": 51.2},  # NVIDIA H100 datasheet (PCIe)
}
TOLERANCE = 0.02  # as tests/test_precision.ACCURACY_TOLERANCE


def accuracy_and_time(precisions: list, device: str, epochs: int) -> list:
    ds = simulate(subject=1, profile="quick", seed=0)
    rows = []
    for readout in ("squared", "signed"):
        config = ETECRMConfig.for_profile(
            "quick", channels=128, readout_weights=readout, epochs=epochs
        )
        for precision in precisions:
            started = time.perf_counter()
            model = fit_etecrm(
                ds.train.stimuli,
                ds.train.responses["V1"],
                replace(config, precision=precision),
                device=device,
                progress=False,
            )
            seconds = time.perf_counter() - started
            predicted = torch.as_tensor(model.predict(ds.test.stimuli))
            r = np.asarray(pearson_r(predicted, torch.as_tensor(ds.test.responses["V1"])))
            rows.append(
                {
                    "readout": readout,
                    "precision": model.history.precision,
                    "seconds": round(seconds, 2),
                    "epoch_seconds": round(float(np.median(model.history.epoch_seconds[-2:])), 4),
                    "finite": bool(np.isfinite(model.history.train_loss).all())
                    and bool(torch.isfinite(predicted).all()),
                    "median_r": round(float(np.median(r)), 4),
                }
            )
            print(rows[-1], flush=True)
    return rows


def chapter_four_loop_on_gpu() -> str:
    """Run chapter 4's hand-written loop cell (quick profile) as the chapter does: its output."""
    import contextlib
    import io

    from etecrm_lib import evaluation, losses
    from etecrm_lib.training import prepare_images, split_train_val

    cells = json.loads((ROOT / "book" / "04_end_to_end.ipynb").read_text())["cells"]  # no nbformat
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    source = next(s for s in sources if "hand_val_median" in s)
    ds = simulate(subject=1, profile="quick", seed=0)
    scope = {
        "ds": ds,
        "ROI": "V1",
        "SEED": 0,
        "config": ETECRMConfig.for_profile("quick"),
        "n_voxels": ds.n_voxels("V1"),
        "np": np,
        "torch": torch,
        "evaluation": evaluation,
        "losses": losses,
        "prepare_images": prepare_images,
        "split_train_val": split_train_val,
    }
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, scope)
    return out.getvalue().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="precision.json")
    parser.add_argument("--smoke", action="store_true", help="a CPU check of this script (short)")
    args = parser.parse_args()
    device, epochs, profile = ("cpu", 2, "quick") if args.smoke else ("cuda", 20, "full")
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    capability = torch.cuda.get_device_capability() if device == "cuda" else (9, 0)
    precisions = ["fp32", "fp16"] + (["bf16"] if capability >= (8, 0) else [])
    report = {"device": name, "capability": list(capability), "torch": torch.__version__}
    print(report, flush=True)
    report["accuracy"] = accuracy_and_time(precisions, device, epochs)
    by = {(r["readout"], r["precision"]): r for r in report["accuracy"]}  # CPU: all fp32
    report["accuracy_ok"] = all(
        r["finite"] and abs(r["median_r"] - by[(r["readout"], "fp32")]["median_r"]) <= TOLERANCE
        for r in report["accuracy"]
    )
    Path(args.out).write_text(json.dumps(report, indent=1))
    report["chapter_four_loop"] = chapter_four_loop_on_gpu()
    print(report["chapter_four_loop"], flush=True)
    report["estimates"] = {}
    for chapter in estimates.CHAPTER_WORK:
        for precision in precisions:
            got = estimates.chapter_estimate(chapter, profile, precision, device)
            report["estimates"][f"{chapter} {precision}"] = got
            print(chapter, precision, {k: round(v, 3) for k, v in got.items() if k != "precision"})
        Path(args.out).write_text(json.dumps(report, indent=1))
    lent = "H100 PCIe" if "PCIe" in name else "H100 SXM"  # an H200 has the H100 SXM's compute
    report["t4_chapter_8"] = {}
    for precision in ("fp16", "fp32"):
        ratio = PEAK_TFLOPS[lent][precision] / PEAK_TFLOPS["T4"][precision]
        full = report["estimates"][f"08_comparison {precision}"]["minutes"]
        quick = estimates.chapter_estimate("08_comparison", "quick", precision, device)["minutes"]
        report["t4_chapter_8"][precision] = {
            "ratio": round(ratio, 2),
            "full_minutes": round(full * ratio, 1),
            "quick_minutes": round(quick * ratio, 2),
        }
        print("T4-class, chapter 8,", precision, report["t4_chapter_8"][precision], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print("ACCURACY OK" if report["accuracy_ok"] else "ACCURACY NOT WITHIN TOLERANCE", flush=True)


if __name__ == "__main__":
    main()

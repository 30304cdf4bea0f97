"""Execute every chapter of the book (as listed in _toc.yml) and print its wall time.

    ETECRM_PROFILE=full python benchmarks/bench_chapters.py      # e.g. on a GPU machine
    ETECRM_PROFILE=quick python benchmarks/bench_chapters.py     # what the CPU book build runs

Uses nbclient directly (no Sphinx), so it needs only the packages the chapters import.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from etecrm_lib.notebooks import toc_chapters  # noqa: E402


def main() -> None:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"profile {os.environ.get('ETECRM_PROFILE', '(auto)')}, device {device}", flush=True)
    rows = []
    for chapter in toc_chapters(ROOT):
        path = ROOT / chapter
        if path.suffix != ".ipynb":
            continue
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        status = "ok"
        try:
            NotebookClient(
                nb,
                timeout=1200,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
        except Exception as err:  # report and go on with the next chapter
            status = f"FAILED: {type(err).__name__}: {str(err)[-300:]}"
        seconds = time.perf_counter() - start
        rows.append((path.name, seconds, status))
        print(f"{path.name:40s} {seconds:7.1f} s  {status}", flush=True)
    print(f"total {sum(r[1] for r in rows):.1f} s")


if __name__ == "__main__":
    main()

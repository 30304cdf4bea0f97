"""Helpers for the real-data loader tests: tiny made-up files in the exact real formats, and a local
HTTP server on 127.0.0.1 (no internet in tests).

Nothing here is real data: every number is drawn from a seeded random generator.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

# --------------------------------------------------------------------------- local HTTP server
LOGIN_PAGE = (
    b"<html><body><form><input name='username'><input name='password' "
    b"type='password'></form></body></html>"
)


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` (URL path -> bytes), with Range
    support.

    - ``cut_next``: how many of the next responses send half the body and then close the connection.
    - ``crcns``: ``(username, password)``; a POST to ``/index.php`` with those form fields and
      ``fn=<name>`` gets ``files["/" + name]``; a wrong login gets an HTML login page (status 200),
      as CRCNS does.
    - ``requests``: one dict per request (method, path, range header, form).
    """

    def __init__(self, files: dict, crcns=None):
        self.files = dict(files)
        self.crcns = crcns
        self.cut_next = 0
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                server._log(self, None)
                self._send(server.files.get(urllib.parse.urlsplit(self.path).path))

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                server._log(self, form)
                if server.crcns is None or urllib.parse.urlsplit(self.path).path != "/index.php":
                    return self._send(None)
                if (form.get("username"), form.get("password")) != server.crcns or form.get(
                    "submit"
                ) != "Login":
                    return self._send(LOGIN_PAGE, content_type="text/html; charset=utf-8")
                self._send(server.files.get("/" + form.get("fn", "")))

            def _send(self, body, content_type="application/octet-stream"):
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and content_type != "text/html; charset=utf-8":
                    start = int(rng[len("bytes=") :].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                payload = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if server.cut_next > 0:
                    server.cut_next -= 1
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _log(self, handler, form):
        self.requests.append(
            {
                "method": handler.command,
                "path": handler.path,
                "range": handler.headers.get("Range"),
                "form": form,
            }
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where no server listens (for 'server down' tests)."""
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    time.sleep(0.01)
    return f"http://127.0.0.1:{port}/file.npz"


# --------------------------------------------------------------------------- kay_images.npz
KAY_ROI_NAMES = np.array(["Other", "V1", "V2", "V3", "V3A", "V3B", "V4", "LatOcc"])


def make_kay_arrays(
    n_train=20, n_test=6, size=16, voxels_per_roi=(5, 6, 4, 3, 2, 5, 4), seed=0
) -> dict:
    """The arrays of a made-up kay_images.npz: real keys and dtypes, tiny sizes.

    Stimuli are in [-0.4, 0.6] so the loader must rescale them; roi codes 1..7 index ``roi_names``.
    """
    rng = np.random.default_rng(seed)
    roi = np.concatenate([np.full(n, code) for code, n in enumerate(voxels_per_roi, start=1)])
    roi = rng.permutation(roi)
    n_vox = roi.size
    return {
        "stimuli": rng.uniform(-0.4, 0.6, size=(n_train, size, size)).astype(np.float32),
        "stimuli_test": rng.uniform(-0.4, 0.6, size=(n_test, size, size)).astype(np.float32),
        "responses": rng.normal(size=(n_train, n_vox)).astype(np.float32),
        "responses_test": rng.normal(size=(n_test, n_vox)).astype(np.float32),
        "roi": roi.astype(np.int64),
        "roi_names": KAY_ROI_NAMES,
    }


def kay_npz_bytes(arrays: dict) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# --------------------------------------------------------------------------- vim-1 MATLAB files
def make_vim1_arrays(n_train=20, n_test=6, size=16, n_vox=30, seed=0, subjects=(1,)) -> dict:
    """MATLAB-shaped vim-1 arrays: stimTrn (N, H, W), dataTrnS{n} (voxels, images), roiS{n} (voxels,
    1) ..."""
    rng = np.random.default_rng(seed)
    arrays = {
        "stimTrn": rng.uniform(-0.5, 0.5, size=(n_train, size, size)),
        "stimVal": rng.uniform(-0.45, 0.45, size=(n_test, size, size)),
    }
    for s in subjects:
        roi = np.resize(np.arange(0, 8), n_vox)  # codes 0..7, every ROI present
        arrays[f"dataTrnS{s}"] = rng.normal(size=(n_vox, n_train)).astype(np.float32)
        arrays[f"dataValS{s}"] = rng.normal(size=(n_vox, n_test)).astype(np.float32)
        arrays[f"roiS{s}"] = roi.reshape(-1, 1).astype(np.float64)
        vox_idx = np.sort(
            rng.choice(64 * 64 * 18, n_vox, replace=False) + 1
        )  # 1-based, MATLAB order
        arrays[f"voxIdxS{s}"] = vox_idx.reshape(-1, 1).astype(np.float64)
    return arrays


def savemat_v5(path, arrays: dict) -> None:
    import scipy.io

    scipy.io.savemat(str(path), arrays, format="5")


def savemat_v73(path, arrays: dict) -> None:
    """Write ``arrays`` the way MATLAB's ``save -v7.3`` does: HDF5 behind a 512-byte MATLAB
    userblock, each variable stored column-major (so h5py sees the axes reversed) with a
    ``MATLAB_class`` attribute."""
    import h5py

    classes = {
        np.dtype(np.float64): b"double",
        np.dtype(np.float32): b"single",
        np.dtype(np.uint8): b"uint8",
        np.dtype(np.int64): b"int64",
    }
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in arrays.items():
            value = np.asarray(value)
            if value.ndim == 1:
                value = value.reshape(-1, 1)
            ds = f.create_dataset(
                name, data=value.T
            )  # reversed axes = MATLAB's column-major layout
            ds.attrs["MATLAB_class"] = np.bytes_(classes[value.dtype])
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 "
        b"schema 1.00 ."
    )
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


# ------------------------------------------------------------------- Miyawaki 2008 (nilearn layout)
MIYAWAKI_SHAPE = (4, 4, 3)
MIYAWAKI_AREAS = ("V1d", "V1v", "V2d", "V2v", "V3", "VP", "V3A", "V4v")


def write_miyawaki(data_dir, seed=0, delay=2, n_blocks_random=3, block_len=3):
    """Write a made-up Miyawaki data set where nilearn's ``fetch_miyawaki2008(data_dir)`` finds it.

    nilearn only checks that each expected file exists under ``<data_dir>/miyawaki2008``, so no
    network is used. Every voxel follows one pattern pixel ``delay`` volumes late, plus a linear
    drift, an offset and a little noise. Random runs show ``n_blocks_random`` random patterns;
    figure runs show shapes A, B (odd runs) or C, D (even runs), 3 times each: 18 presentations per
    shape.

    Returns a dict: ``pixel`` (voxel -> pixel index, in the (4, 4, 3) volume), ``shapes`` (4, 10,
    10), ``area`` ((4, 4, 3) array of area names, hemisphere in the first axis: i < 2 is LH).
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    root = data_dir / "miyawaki2008"
    for sub in ("func", "label", "mask"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    n_vox = int(np.prod(MIYAWAKI_SHAPE))
    area = np.array(MIYAWAKI_AREAS * (n_vox // len(MIYAWAKI_AREAS)), dtype=object).reshape(
        MIYAWAKI_SHAPE
    )
    pixel = rng.integers(0, 100, size=MIYAWAKI_SHAPE)
    shapes = (rng.uniform(size=(4, 10, 10)) > 0.5).astype(int)

    def save(path, data, dtype=np.float32):
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), affine), str(path))

    def run(kind, i, patterns):
        rest = -np.ones((10, 10), int)
        frames = [rest, rest]
        for p in patterns:
            frames += [p] * block_len + [rest]
        frames += [rest] * delay
        labels = np.stack(frames)  # (T, 10, 10)
        t = np.arange(len(labels))
        flat = labels.reshape(len(labels), -1, order="F")  # nilearn's column order
        on = np.clip(flat, 0, None).astype(float)
        delayed = np.zeros_like(on)
        delayed[delay:] = on[:-delay] if delay else on
        series = (
            100
            + 2.0 * delayed[:, pixel.ravel()]
            + 0.05 * t[:, None] * rng.uniform(0.5, 1.5, n_vox)
            + 0.05 * rng.normal(size=(len(t), n_vox))
        )
        save(
            root / "func" / f"data_{kind}_run{i:02d}.nii.gz",
            series.T.reshape(MIYAWAKI_SHAPE + (len(t),)),
        )
        np.savetxt(
            root / "label" / f"data_{kind}_run{i:02d}_label.csv", flat, fmt="%d", delimiter=","
        )

    for i in range(1, 21):
        run("random", i, (rng.uniform(size=(n_blocks_random, 10, 10)) > 0.5).astype(int))
    for i in range(1, 13):
        run("figure", i, shapes[[0, 1, 0, 1, 0, 1]] if i % 2 else shapes[[2, 3, 2, 3, 2, 3]])
    from nilearn.datasets.func import miyawaki2008_file_mask

    for name in miyawaki2008_file_mask():
        stem = name.replace(".nii.gz", "")
        if stem == "mask":
            data = np.ones(MIYAWAKI_SHAPE)
        elif stem[2:] in MIYAWAKI_AREAS:
            hemi = np.zeros(MIYAWAKI_SHAPE, bool)
            hemi[:2] = stem.startswith("LH")
            hemi[2:] = stem.startswith("RH")
            data = (area == stem[2:]) & hemi
        else:  # the eccentricity ("lag") masks are not used by the loader
            data = np.zeros(MIYAWAKI_SHAPE)
        save(root / "mask" / name, data, np.uint8)
    save(root / "bg.nii.gz", np.ones(MIYAWAKI_SHAPE))
    return {"pixel": pixel, "shapes": shapes, "area": area}

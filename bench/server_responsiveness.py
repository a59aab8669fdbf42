"""Whether opening a heavy series holds up the page's other readers (issue 32: "while a 9,000-slice zip was
being opened, one of another reader's requests failed with a read error").

One reader uploads a zip of a DICOM series through the page's own upload endpoint (Gradio's upload, then
the page's open handler: read, hash, store, write the viewer's volume) while a second client asks the
server for its page config every 50 ms. Reports the second client's latencies and any failed request.
Writes one JSON file naming the machine.

    python bench/server_responsiveness.py --slices 9000 --side 128 --out bench/results-server-responsiveness.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from run import machine  # noqa: E402

from anomascope.app.bundles import discover  # noqa: E402
from anomascope.app.page.server import serve  # noqa: E402
from anomascope.app.review.app import ReviewApp  # noqa: E402
from anomascope.storage import Database  # noqa: E402
from tests.app.test_browser import _free_port  # noqa: E402
from tests.conftest import make_dicom  # noqa: E402


def series_zip(path: Path, slices: int, side: int) -> Path:
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(0)
    series, study = generate_uid(), generate_uid()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(slices):
            ds = make_dicom(
                (rng.random((side, side)) * 1000).astype(np.uint16),
                SeriesInstanceUID=series,
                StudyInstanceUID=study,
                ImagePositionPatient=[0, 0, float(i)],
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                PixelSpacing=[1, 1],
                InstanceNumber=i + 1,
            )
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            archive.writestr(f"s{i:05d}.dcm", buffer.getvalue())
    return path


def poll(url: str, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                client.get(f"{url}/config").raise_for_status()
                latencies.append(time.perf_counter() - start)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=9000)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        archive = series_zip(folder / "series.zip", args.slices, args.side)
        zip_bytes = archive.stat().st_size
        app = ReviewApp(
            Database(f"sqlite:///{folder / 'bench.sqlite'}"),
            discover([ROOT / "assets" / "models"]),
            folder / "cases",
            torch.device("cpu"),
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        demo = serve(app, "127.0.0.1", port, block=False)
        latencies: list[float] = []
        failures: list[str] = []
        stop = threading.Event()
        poller = threading.Thread(target=poll, args=(url, stop, latencies, failures))
        poller.start()
        start = time.perf_counter()
        Client(url, verbose=False).predict(handle_file(str(archive)), "", None, api_name="/on_upload")
        opened_s = time.perf_counter() - start
        stop.set()
        poller.join()
        demo.close()
    result = {
        "machine": machine(torch.device("cpu")),
        "series": {"slices": args.slices, "side": args.side, "zip_bytes": zip_bytes},
        "open_seconds": round(opened_s, 2),
        "other_reader": {
            "requests": len(latencies) + len(failures),
            "failed": failures,
            "median_s": round(statistics.median(latencies), 4),
            "max_s": round(max(latencies), 4),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

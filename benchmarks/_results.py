"""What the benchmarks share: where they write their numbers
(``benchmarks/results/<name>.csv``), and the fastest-call timer."""

import csv
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_rows(name: str, rows: list[dict]) -> Path:
    """Write ``rows`` (columns: the first row's keys) to ``results/<name>.csv``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def fastest_call(fn, seconds):
    """The fastest of the calls of ``fn`` made in ``seconds`` (after one untimed call):
    on a shared machine noise only adds time."""
    fn()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

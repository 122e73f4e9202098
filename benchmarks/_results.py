"""Where the benchmarks write their numbers: ``benchmarks/results/<name>.csv``."""

import csv
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

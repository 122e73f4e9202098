"""Net's calls through the kernels' CPython entry point against the same calls through cffi.

    python benchmarks/call_paths.py [--ks 10 100] [--ns 10 100 1000] [--rounds 6]

At small N the Python around a kernel call is a good part of it.  Net calls sf_run
through the compiled module's CPython entry point (templates/python_entry.h), and
through cffi only where a module lacks it.  This times ``loss``, ``loss_and_gradient``
and ``hessian`` of the reference nets (2 inputs, one softplus hidden layer of k neurons
with bias, linear output with bias; one thread, pinned to one CPU where the OS allows
it) both ways in one process: two Nets on the same data, one with the entry point
switched off.  The two alternate for --rounds rounds of --budget seconds each, and each
path's time is its fastest call, since on a shared machine noise only adds time.  Both
give the same bits (checked here, and in tests/test_python_entry.py).  Results go to
stdout and to benchmarks/results/call_paths.csv.
"""

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import symflow  # noqa: E402
from _results import fastest_call, write_rows  # noqa: E402  (benchmarks/_results.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--ns", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.2, help="seconds per path and round")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'k':>4} {'P':>5} {'N':>6} {'call':>18} {'entry us':>9} {'cffi us':>9} {'cffi/entry':>10}")
    for k in args.ks:
        arch = symflow.MLP(2, [(k, "softplus", True), (1, "identity", True)])
        p = arch.random_params(seed=1)
        for n in args.ns:
            X, Y = rng.normal(size=(n, 2)), rng.normal(size=(n, 1))
            entry = symflow.Net(arch, X, Y, threads=1)
            if entry._fixed[9] is None:
                raise SystemExit("this module has no CPython entry point: one path to time")
            cffi = symflow.Net(arch, X, Y, threads=1)
            cffi._fixed = cffi._fixed[:9] + (None, None)
            for name in ("loss", "loss_and_gradient", "hessian"):
                a, b = getattr(entry, name), getattr(cffi, name)
                ra, rb = a(p), b(p)
                same = all(np.array_equal(x, y) for x, y in
                           zip(ra if isinstance(ra, tuple) else (ra,),
                               rb if isinstance(rb, tuple) else (rb,)))
                if not same:
                    raise SystemExit(f"{name} differs between the paths at k = {k}, N = {n}")
                best = {"entry": float("inf"), "cffi": float("inf")}
                for _ in range(args.rounds):
                    best["entry"] = min(best["entry"], fastest_call(lambda: a(p), args.budget))
                    best["cffi"] = min(best["cffi"], fastest_call(lambda: b(p), args.budget))
                ratio = best["cffi"] / best["entry"]
                print(f"{k:4d} {arch.nparams:5d} {n:6d} {name:>18} {best['entry'] * 1e6:9.2f} "
                      f"{best['cffi'] * 1e6:9.2f} {ratio:10.2f}", flush=True)
                rows.append({"k": k, "P": arch.nparams, "N": n, "call": name,
                             "entry_us": best["entry"] * 1e6, "cffi_us": best["cffi"] * 1e6,
                             "cffi_over_entry": ratio})
    print(f"\nwrote {write_rows('call_paths', rows)}")


if __name__ == "__main__":
    main()

"""The Hessian's Gauss-Newton part by symflow's C loops (sf_gn_dot) against BLAS dsyrk.

    python benchmarks/hessian_paths.py [--ks 10 20 30] [--depth 1] [--ns 10 100 1000 10000]

Times whole Hessians (one thread, pinned to one CPU where the OS allows it) of the
reference nets (2 inputs, softplus hidden layers of k neurons with bias, linear output
with bias) with both paths in one process, by switching
``symflow.problems._BLAS_HESSIAN_MIN_P``: to 1 (dsyrk at every P) and to a value above P
(the C loops).  The paths alternate for --rounds rounds of --budget seconds each, and
each path's time is its fastest call, since on a shared machine noise only adds time.
This is how the threshold _BLAS_HESSIAN_MIN_P was chosen; it also reports the largest
difference of the two Hessians relative to the largest entry.  Results go to stdout and
to benchmarks/results/hessian_paths.csv.  Additions of few columns (N samples per
output, or the last columns of a range) go to the kernels' outer-product loops
(sf_gn_outer, up to P = 3000) instead: up to 16 columns in place of the C loops and up
to 32 in place of dsyrk, so at N <= 16 both settings time the same code.
"""

import argparse
import os

# before NumPy and SciPy load their BLAS, which read these once
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import symflow  # noqa: E402
import symflow.problems as problems  # noqa: E402
from _results import fastest_call, write_rows  # noqa: E402  (benchmarks/_results.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20, 30])
    ap.add_argument("--depth", type=int, default=1, help="hidden layers")
    ap.add_argument("--ns", type=int, nargs="+", default=[10, 100, 1000, 10000])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per path and round")
    args = ap.parse_args()
    if problems._dsyrk_address() == 0:
        raise SystemExit("SciPy exposes no BLAS dsyrk here: there is only one path to time")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    saved = problems._BLAS_HESSIAN_MIN_P
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'k':>4} {'P':>5} {'N':>7} {'C loops':>11} {'dsyrk':>11} {'dsyrk/C':>8} {'diff':>8}")
    try:
        for k in args.ks:
            arch = symflow.MLP(2, [(k, "softplus", True)] * args.depth + [(1, "identity", True)])
            P = arch.nparams
            p = arch.random_params(seed=1)
            for N in args.ns:
                net = symflow.Net(arch, rng.standard_normal((N, 2)), rng.standard_normal((N, 1)),
                                  threads=1)
                best = {"c": float("inf"), "blas": float("inf")}
                for _ in range(args.rounds):
                    for path, threshold in (("c", P + 1), ("blas", 1)):
                        problems._BLAS_HESSIAN_MIN_P = threshold
                        best[path] = min(best[path], fastest_call(lambda: net.hessian(p), args.budget))
                problems._BLAS_HESSIAN_MIN_P = P + 1
                h_c = net.hessian(p)
                problems._BLAS_HESSIAN_MIN_P = 1
                h_blas = net.hessian(p)
                diff = float(np.max(np.abs(h_c - h_blas)) / np.max(np.abs(h_blas)))
                rows.append({"k": k, "depth": args.depth, "P": P, "N": N, "c_loops_s": best["c"],
                             "dsyrk_s": best["blas"], "dsyrk_over_c": best["blas"] / best["c"],
                             "max_rel_diff": diff})
                print(f"{k:4d} {P:5d} {N:7d} {best['c'] * 1e6:9.1f}us {best['blas'] * 1e6:9.1f}us "
                      f"{best['blas'] / best['c']:8.2f} {diff:8.1e}", flush=True)
    finally:
        problems._BLAS_HESSIAN_MIN_P = saved
    out = write_rows("hessian_paths", rows)
    print(f"current threshold: dsyrk from P = {saved}; results in {out}")


if __name__ == "__main__":
    main()

"""Foundation timings: compile once, load from the cache, one gradient, one Hessian.

    python benchmarks/foundation.py [--ks 10 50 100] [--ns 10 100 1000 10000 100000]

Reference grid of design.md: 2 inputs, one softplus hidden layer of k neurons with
bias, one linear output with bias (P = 4k + 1), float64.  The first build runs in
a fresh temporary cache (SymPy + C emission + compilation); the cache-hit time is
measured in a new Python process (import symflow + build a Net), as a user
experiences it.  Times are medians of repeats; results go to stdout and to
benchmarks/results/foundation.csv.
"""

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from _results import write_rows  # benchmarks/_results.py


def median_time(fn, min_time=0.3, max_repeats=50):
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--ns", type=int, nargs="+", default=[10, 100, 1000, 10000, 100000])
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="symflow-bench-")
    os.environ["SYMFLOW_CACHE_DIR"] = cache
    atexit.register(shutil.rmtree, cache, True)  # a cold build is measured; leave nothing behind
    import symflow

    rows = []
    for k in args.ks:
        arch = symflow.MLP(2, [(k, "softplus", True), (1, "identity", True)])
        rng = np.random.default_rng(0)
        X = rng.normal(size=(max(args.ns), 2))
        Y = np.tanh(X[:, :1] - X[:, 1:])
        t0 = time.perf_counter()
        symflow.Net(arch, X[:1], Y[:1])
        first_build = time.perf_counter() - t0
        code = ("import time; t0 = time.perf_counter(); import numpy as np, symflow; "
                f"symflow.Net(symflow.MLP(2, [({k}, 'softplus', True), (1, 'identity', True)]), "
                "np.zeros((1, 2)), np.zeros(1)); print(time.perf_counter() - t0)")
        hit = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True, env=os.environ).stdout)
        p = arch.random_params(seed=1)
        for n in args.ns:
            net = symflow.Net(arch, X[:n], Y[:n])
            t_grad = median_time(lambda: net.loss_and_gradient(p))
            t_hess = median_time(lambda: net.hessian(p), max_repeats=10)
            rows.append({"k": k, "P": arch.nparams, "N": n, "first_build_s": first_build,
                         "cache_hit_load_s": hit, "loss_grad_s": t_grad, "hessian_s": t_hess})
            print(f"k={k:4d} P={arch.nparams:4d} N={n:7d}  build {first_build:6.2f}s  "
                  f"cache-hit load {hit * 1e3:7.1f}ms  loss+grad {t_grad * 1e6:11.1f}us  "
                  f"hessian {t_hess * 1e3:10.3f}ms", flush=True)
    print(f"wrote {write_rows('foundation', rows)}")


if __name__ == "__main__":
    main()

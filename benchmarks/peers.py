"""symflow against PyTorch and JAX on the reference grid, in the same run.

    python benchmarks/peers.py                      # full grid, 1 and 2 threads
    python benchmarks/peers.py --threads 1          # full grid, 1 thread only
    python benchmarks/peers.py --quick              # smoke run (k=10, N <= 10^3)
    python benchmarks/peers.py --ks 10 50 --ns 10 1000 --budget 0.5
    python benchmarks/peers.py --depth 2            # two hidden layers, k = 10 20 50

Reference grid (design.md, "Speed is measured, not asserted"): 2 inputs, one
softplus hidden layer of k neurons with bias, one linear output with bias
(P = 4k + 1), N samples, float64.  Loss = (1/N) sum_n sum_o (f_o(x_n) - y_no)^2.
``--depth D`` stacks D such hidden layers of k neurons (P = 4k + 1 + (D - 1)(k^2 + k));
the default widths for D >= 2 are 10, 20, 50 (P = 151, 501, 2751 for D = 2).
At every grid point the same X ~ N(0, 1), Y (random teacher net of the same
architecture + 0.1 N(0, 1) noise) and p (``arch.random_params``) go to every tool.

Operations timed (median wall time of repeats, never the first call):

* loss+gradient -- symflow ``Net.loss_and_gradient``; torch ``loss.backward()`` on a
  flat float64 parameter vector (torch.nn.functional ops, same layout as symflow);
  JAX ``jax.jit(jax.value_and_grad(loss))`` with ``.block_until_ready()``.
* full Hessian -- symflow ``Net.hessian``; torch, the faster of
  ``torch.autograd.functional.hessian`` and ``torch.func.hessian``; JAX
  ``jax.jit(jax.hessian(loss))``.  JAX compile time (first call minus steady-state
  call) is reported separately.

Each thread count runs in its own worker subprocess, because the thread
settings (OMP/OPENBLAS/MKL_NUM_THREADS, SYMFLOW_NUM_THREADS, XLA_FLAGS) must be
in the environment before numpy/torch/JAX are imported; torch additionally gets
``torch.set_num_threads``.  A worker with fewer threads than the CPUs it may use is
also pinned to that many CPUs (``sched_setaffinity``), because JAX 0.10 does not keep
to the 1-thread XLA_FLAGS (it used 1.4-1.9 cores without the pinning).  ``cpu/wall``
(process CPU time over wall time during the timed repeats) is recorded so that a tool
using more cores than allowed is visible.

Also reported: the measured float64 GEMM rate (numpy ``A @ B``, 2000 x 2000, same
thread count), the Hessian "ceiling" time N * P^2 / GEMM rate (flops of a
symmetric rank-N update of a P x P matrix, 2 N P^2 / 2), ratios peer / symflow
per operation (from medians; the CSV also has every tool's fastest call, ``*_min_s``,
and the ratios from those, ``ratio_best_*_min`` and ``hess_over_ceiling_min``), and
the accuracy of symflow's gradient and Hessian against torch
float64 (max |a - b| / max |b|; must be <= 1e-12).

A peer call is skipped (with a note, never faked) when the peer is not
installed, when its estimated memory exceeds --mem-gb, or when its predicted
single-call time (linear in N from the previous N of the same k) exceeds
--max-call seconds.  Memory models (bytes; fitted to peak RSS with torch 2.15 and
JAX 0.10 on x86-64): torch backward 16 N k 8, torch.autograd.functional.hessian
200 N k 8, torch.func.hessian 8.5 P N k 8, JAX value_and_grad 4 N k 8, JAX hessian
3.5 P N k 8, with k the total number of hidden neurons (D k) for deeper nets.  Where every timed torch Hessian is skipped, the accuracy reference
is an untimed torch.func.hessian summed over sample chunks that fit the budget.  Results: a table on stdout and
benchmarks/results/peers_<threads>t.csv (``peers_d<D>_<threads>t.csv`` for --depth D >= 2;
git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FULL_KS = [10, 50, 100]
DEEP_KS = [10, 20, 50]  # default widths for --depth >= 2 (the Hessian has P^2 entries)
FULL_NS = [10, 100, 1000, 10_000, 100_000]
QUICK_KS = [10]
QUICK_NS = [10, 100, 1000]
ACC_TOL = 1e-12
SEED = 1234

# ----------------------------------------------------------------------------- parent


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    t = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "SYMFLOW_NUM_THREADS"):
        env[var] = t
    xla = env.get("XLA_FLAGS", "")
    if threads == 1:
        xla += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        xla += f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    env["XLA_FLAGS"] = xla.strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["JAX_ENABLE_X64"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def parent(args, argv) -> int:
    rc = 0
    for t in args.threads:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(t)]
        cmd += strip_threads(argv)
        print(f"\n=== worker: {t} thread(s): {' '.join(cmd[1:])}", flush=True)
        r = subprocess.run(cmd, env=thread_env(t))
        if r.returncode:
            print(f"worker for {t} thread(s) failed with exit code {r.returncode}", flush=True)
            rc = r.returncode
    return rc


def strip_threads(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            if a.startswith("-"):
                skip = False
            else:
                continue
        if a == "--threads":
            skip = True
            continue
        if a.startswith("--threads="):
            continue
        out.append(a)
    return out


# ----------------------------------------------------------------------------- worker
# (numpy, symflow, torch and jax are imported only here, after the environment is set)


def fmt_t(s):
    if s is None or s != s:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f}us"
    if s < 1:
        return f"{s * 1e3:.2f}ms"
    return f"{s:.2f}s"


def fmt_r(r):
    if r is None or r != r:
        return "-"
    return f"{r:.3g}x" if r < 100 else f"{r:.0f}x"


def fmt_e(e):
    if e is None or e != e:
        return "-"
    return f"{e:.1e}"


def mem_available_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 8.0


class Timer:
    """Adaptive median timing: one untimed warm-up call, then repeats until the
    time budget is used (at least `min_reps`, or 1 when a call is longer than
    budget / min_reps; at most `max_reps`).  The cap is high so that a call of a few
    microseconds is also timed over the whole budget: with a cap of 1000 its median
    came from the first ~5 ms, and in one 2-thread run symflow's k = 10, N = 10 Hessian
    was timed while another thread of the process used 0.6 of a core (cpu/wall 1.62)."""

    def __init__(self, budget, min_reps=3, max_reps=200_000):
        self.budget, self.min_reps, self.max_reps = budget, min_reps, max_reps

    def __call__(self, fn):
        import numpy as np

        t0 = time.perf_counter()
        out = fn()  # warm-up, not measured
        first = time.perf_counter() - t0
        times, c0 = [], time.process_time()
        w0 = time.perf_counter()
        min_reps = self.min_reps if first * self.min_reps <= self.budget else 1
        while len(times) < self.max_reps:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= min_reps and time.perf_counter() - w0 >= self.budget:
                break
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        return {"median": float(np.median(times)), "min": float(np.min(times)), "first": first, "reps": len(times),
                "cpu_util": cpu / wall if wall > 0 else float("nan"), "out": out}


def restrict_cpus(threads: int) -> str:
    """Pin this process (and the threads it will start) to `threads` of the CPUs it may
    use, so that every tool gets the same number of cores: thread-count settings alone
    do not bind JAX 0.10, whose XLA CPU runtime ran on 1.4-1.9 cores with the 1-thread
    XLA_FLAGS.  Returns a description for the CSV header."""
    if not hasattr(os, "sched_setaffinity"):
        return "not restricted (no sched_setaffinity on this platform)"
    cpus = sorted(os.sched_getaffinity(0))
    if threads >= len(cpus):
        return f"all {len(cpus)} allowed CPUs"
    os.sched_setaffinity(0, cpus[:threads])
    return f"CPUs {cpus[:threads]} of {cpus}"


def gemm_timing(budget):
    """Timer statistics of numpy's 2000 x 2000 float64 product (its operands and result
    are freed on return)."""
    import numpy as np

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2000, 2000)), rng.standard_normal((2000, 2000))
    g = Timer(budget, min_reps=3)(lambda: A @ B)
    g.pop("out")
    return g


def worker(args) -> int:
    threads = args.threads[0]
    affinity = restrict_cpus(threads)  # before numpy/torch/JAX start their thread pools
    import warnings

    import numpy as np

    import symflow

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*")
    notes_global = []
    # ---- optional peers
    try:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
        torch_version = torch.__version__
    except ImportError as e:
        torch = F = None
        torch_version = None
        notes_global.append(f"torch not installed ({e}): torch columns skipped")
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        jax_version = jax.__version__
    except ImportError as e:
        jax = jnp = None
        jax_version = None
        notes_global.append(f"jax not installed ({e}): jax columns skipped")

    mem_gb = args.mem_gb if args.mem_gb else 0.5 * mem_available_gb()
    timer = Timer(args.budget)

    # ---- machine GEMM rate (numpy, float64, same thread count), once, before the grid.
    # Not next to each Hessian: tried, a two-thread numpy GEMM left its BLAS thread
    # spinning and slowed the two-thread Hessians timed right after it (k = 50, N = 10^3:
    # median 1.60-1.66 ms against 0.654 ms without the GEMM, fastest calls 0.648 ms).
    g = gemm_timing(max(args.budget, 1.0))
    gemm_gflops = 2 * 2000**3 / g["min"] / 1e9  # peak (best repeat): the ceiling is a hardware bound
    gemm_median = 2 * 2000**3 / g["median"] / 1e9

    header = {
        "threads": threads, "python": platform.python_version(), "numpy": np.__version__,
        "symflow": getattr(symflow, "__version__", "?"), "torch": torch_version, "jax": jax_version,
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gemm_gflops": gemm_gflops, "gemm_gflops_median": gemm_median, "gemm_cpu_util": g["cpu_util"], "mem_budget_gb": mem_gb,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "cpu_affinity": affinity,
    }
    print(f"# threads={threads}  python {header['python']}  numpy {header['numpy']}  "
          f"symflow {header['symflow']}  torch {torch_version}  jax {jax_version}  "
          f"cpus={header['cpus']} ({affinity})  load avg {header['loadavg_start']:.2f}", flush=True)
    print(f"# float64 GEMM (numpy 2000x2000 A@B, {threads} thread(s)): {gemm_gflops:.1f} GFLOP/s best, "
          f"{gemm_median:.1f} median (cpu/wall {g['cpu_util']:.2f});  Hessian ceiling time = N*P^2 / GEMM rate "
          f"(symmetric rank-N update, 2*N*P^2/2 flops)", flush=True)
    for n in notes_global:
        print("# note:", n)

    D = args.depth
    ks = args.ks or (QUICK_KS if args.quick else FULL_KS if D == 1 else DEEP_KS)
    ns = args.ns or (QUICK_NS if args.quick else FULL_NS)
    header["depth"] = D
    rows = []
    for k in ks:
        arch = symflow.MLP(2, [(k, "softplus", True)] * D + [(1, "identity", True)])
        P = arch.nparams
        assert P == 4 * k + 1 + (D - 1) * (k * k + k)
        names, off = arch.parameter_names(), 0
        for l, (nout, nin) in enumerate(layer_shapes(k, D), start=1):
            assert names[off] == f"W{l}_0_0" and names[off + nout * nin] == f"b{l}_0", \
                "unexpected parameter layout"
            off += nout * nin + nout
        last = {}  # (tool, op) -> (N, seconds) for time prediction
        for N in ns:
            rows.append(run_point(args, arch, k, D, P, N, threads, gemm_gflops, mem_gb, timer, last,
                                  np, torch, F, jax, jnp))
            print_row(rows[-1], first=len(rows) == 1)
            write_csv(rows, header, threads, quiet=True)  # partial results survive a crash
    header["loadavg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_csv(rows, header, threads)
    print_tables(rows, header)
    return 1 if any(r.get("symflow_failed") for r in rows) else 0


def layer_shapes(k, D):
    """(outputs, inputs) of each layer: D hidden layers of k, then one linear output."""
    return [(k, 2)] + [(k, k)] * (D - 1) + [(1, k)]


def unpack(q, k, D, reshape):
    """[(W, b), ...] of the flat parameter vector q (symflow's layout: layer by layer,
    W (out, in) row-major, then b); reshape(array, shape) is the tool's own."""
    out, off = [], 0
    for nout, nin in layer_shapes(k, D):
        w_end = off + nout * nin
        out.append((reshape(q[off:w_end], (nout, nin)), q[w_end:w_end + nout]))
        off = w_end + nout
    return out


def run_point(args, arch, k, D, P, N, threads, gemm_gflops, mem_gb, timer, last,
              np, torch, F, jax, jnp):
    import symflow

    row = {"threads": threads, "depth": D, "k": k, "P": P, "N": N, "gemm_gflops": gemm_gflops,
           "ceiling_s": N * P * P / (gemm_gflops * 1e9)}
    notes = []
    rng = np.random.default_rng([SEED, k, N])
    X = rng.standard_normal((N, 2))
    teacher = arch.random_params(seed=SEED + 1)
    Y = forward_np(teacher, X, k, D) + 0.1 * rng.standard_normal((N, 1))
    nh = D * k  # hidden neurons, the memory models' k
    p = arch.random_params(seed=SEED + 2)
    GB = 2**30

    def predicted(key):
        if key not in last:
            return 0.0
        n0, t0 = last[key]
        return t0 * N / n0

    def measure(key, fn, mem_bytes=0.0):
        """Time fn or return a skip note; records the result under key."""
        name = "/".join(key)
        if mem_bytes > mem_gb * GB:
            notes.append(f"{name} skipped: would need ~{mem_bytes / GB:.2g} GB (> {mem_gb:.1f} GB budget)")
            return None
        pt = predicted(key)
        if pt > args.max_call:
            notes.append(f"{name} skipped: one call would take ~{pt:.0f} s (> --max-call {args.max_call:g} s)")
            return None
        try:
            r = timer(fn)
        except Exception as e:  # a peer running out of memory etc.: note it; symflow errors are raised
            if key[0] == "symflow":
                raise
            notes.append(f"{name} failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
            return None
        last[key] = (N, r["median"])
        col = name.replace("/", "_")
        row[f"{col}_s"], row[f"{col}_min_s"] = r["median"], r["min"]
        row[f"{col}_reps"], row[f"{col}_cpu_util"] = r["reps"], r["cpu_util"]
        if r["cpu_util"] > threads + 0.35:
            notes.append(f"{name} used {r['cpu_util']:.1f} cores (> {threads} thread(s))")
        return r

    # ---- symflow (a failing build is reported, the peers are still measured, exit code 1)
    t0 = time.perf_counter()
    try:
        net = symflow.Net(arch, X, Y)
    except Exception as e:
        net = None
        row["symflow_failed"] = True
        notes.append(f"SYMFLOW FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    row["symflow_setup_s"] = time.perf_counter() - t0
    sf_g = measure(("symflow", "grad"), lambda: net.loss_and_gradient(p)) if net else None
    sf_h = measure(("symflow", "hess"), lambda: net.hessian(p)) if net else None
    sf_loss, sf_grad = net.loss_and_gradient(p) if sf_g else (None, None)
    sf_hess = sf_h["out"] if sf_h else None

    # ---- torch
    ref_grad = ref_hess = None
    if torch is not None:
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

        def tloss(q):
            return (torch_outputs(torch, F, q, k, D, Xt) - Yt).pow(2).sum(dim=1).mean()

        pt_leaf = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        p0 = torch.tensor(p, dtype=torch.float64)

        def tgrad():
            pt_leaf.grad = None
            L = tloss(pt_leaf)
            L.backward()
            return L.item(), pt_leaf.grad

        r = measure(("torch", "grad"), tgrad, mem_bytes=16 * N * nh * 8)
        if r is not None:
            ref_loss, ref_grad = r["out"][0], r["out"][1].numpy().copy()
        func_hess = torch.func.hessian(tloss)
        ra = measure(("torch", "hess_autograd"), lambda: torch.autograd.functional.hessian(tloss, p0),
                     mem_bytes=200 * N * nh * 8)
        rf = measure(("torch", "hess_func"), lambda: func_hess(p0), mem_bytes=8.5 * P * N * nh * 8)
        cands = [(x["median"], nm, x) for nm, x in (("autograd.functional", ra), ("func", rf)) if x]
        if cands:
            t, nm, x = min(cands, key=lambda c: c[0])
            row["torch_hess_s"], row["torch_hess_method"] = t, nm
            row["torch_hess_min_s"] = x["min"]
            ref_hess = x["out"].numpy().copy()
        elif sf_hess is not None and not args.no_chunked_ref:
            # reference only (not timed): torch Hessian summed over sample chunks
            ref_hess = chunked_torch_hessian(torch, F, p0, k, D, P, N, Xt, Yt, mem_gb)
            if ref_hess is not None:
                notes.append("torch reference Hessian for the accuracy check computed in sample chunks (untimed)")
    else:
        notes.append("torch not installed: skipped")

    # ---- JAX
    if jax is not None:
        Xj, Yj, pj = jnp.asarray(X), jnp.asarray(Y), jnp.asarray(p)

        def jloss(q, X_, Y_):
            *hidden, (Wo, bo) = unpack(q, k, D, jnp.reshape)
            h = X_
            for W, b in hidden:
                h = jax.nn.softplus(h @ W.T + b)
            return jnp.mean(jnp.sum((h @ Wo.T + bo - Y_) ** 2, axis=1))

        vg = jax.jit(jax.value_and_grad(jloss))
        jh = jax.jit(jax.hessian(jloss))
        r = measure(("jax", "grad"), lambda: jax.block_until_ready(vg(pj, Xj, Yj)), mem_bytes=4 * N * nh * 8)
        if r is not None:
            row["jax_grad_compile_s"] = max(r["first"] - r["median"], 0.0)
            jg = np.asarray(r["out"][1])
            if ref_grad is not None:
                row["jax_grad_err"] = relerr(jg, ref_grad)
        r = measure(("jax", "hess"), lambda: jax.block_until_ready(jh(pj, Xj, Yj)), mem_bytes=3.5 * P * N * nh * 8)
        if r is not None:
            row["jax_hess_compile_s"] = max(r["first"] - r["median"], 0.0)
            if ref_hess is not None:
                row["jax_hess_err"] = relerr(np.asarray(r["out"]), ref_hess)
    else:
        notes.append("jax not installed: skipped")

    # ---- accuracy and ratios
    if sf_grad is not None and ref_grad is not None:
        row["loss_err"] = abs(sf_loss - ref_loss) / abs(ref_loss)
        row["grad_err"] = relerr(np.asarray(sf_grad), ref_grad)
    if sf_hess is not None and ref_hess is not None:
        row["hess_err"] = relerr(np.asarray(sf_hess), ref_hess)
    for key in ("loss_err", "grad_err", "hess_err"):
        if row.get(key, 0.0) > ACC_TOL:
            notes.append(f"ACCURACY FAIL: {key} = {row[key]:.2e} > {ACC_TOL:g}")
    for op, peers in (("grad", ("torch_grad_s", "jax_grad_s")), ("hess", ("torch_hess_s", "jax_hess_s"))):
        sf = row.get(f"symflow_{op}_s")
        best = None
        for pk in peers:
            if sf and pk in row:
                row[f"ratio_{pk[:-2]}"] = row[pk] / sf
                best = row[pk] if best is None else min(best, row[pk])
        if sf and best is not None:
            row[f"ratio_best_{op}"] = best / sf
        # the same ratio from each tool's fastest call (a shared machine only adds time)
        sf_min = row.get(f"symflow_{op}_min_s")
        mins = [row[f"{pk[:-2]}_min_s"] for pk in peers if f"{pk[:-2]}_min_s" in row]
        if sf_min and mins:
            row[f"ratio_best_{op}_min"] = min(mins) / sf_min
    if "symflow_hess_s" in row:
        row["hess_over_ceiling"] = row["symflow_hess_s"] / row["ceiling_s"]
        row["hess_over_ceiling_min"] = row["symflow_hess_min_s"] / row["ceiling_s"]
    row["notes"] = "; ".join(notes)
    return row


def forward_np(p, X, k, D):
    import numpy as np

    *hidden, (Wo, bo) = unpack(p, k, D, np.reshape)
    h = X
    for W, b in hidden:
        h = np.logaddexp(0.0, h @ W.T + b)
    return h @ Wo.T + bo


def torch_outputs(torch, F, q, k, D, X):
    """The network's outputs in torch (q a flat float64 tensor in symflow's layout)."""
    *hidden, (Wo, bo) = unpack(q, k, D, torch.reshape)
    h = X
    for W, b in hidden:
        # threshold=40: exact log1p(exp(z)) in float64 (default 20 differs by ~2e-9)
        h = F.softplus(F.linear(h, W, b), beta=1.0, threshold=40.0)
    return F.linear(h, Wo, bo)


def relerr(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def chunked_torch_hessian(torch, F, p0, k, D, P, N, Xt, Yt, mem_gb):
    """Torch float64 Hessian of the mean loss as a weighted sum of chunk Hessians
    (torch.func.hessian per chunk, chunk size chosen to fit the memory budget)."""
    chunk = int(max(1000, min(N, mem_gb * 2**30 / 2 / (8.5 * P * D * k * 8))))
    H = torch.zeros(P, P, dtype=torch.float64)
    for s in range(0, N, chunk):
        Xc, Yc = Xt[s: s + chunk], Yt[s: s + chunk]

        def closs(q, Xc=Xc, Yc=Yc):
            return (torch_outputs(torch, F, q, k, D, Xc) - Yc).pow(2).sum()

        H += torch.func.hessian(closs)(p0)
    return (H / N).numpy()


COLUMNS = [
    "threads", "depth", "k", "P", "N",
    "symflow_grad_s", "torch_grad_s", "jax_grad_s", "ratio_torch_grad", "ratio_jax_grad", "ratio_best_grad",
    "symflow_hess_s", "torch_hess_s", "torch_hess_method", "torch_hess_autograd_s", "torch_hess_func_s",
    "jax_hess_s", "ratio_torch_hess", "ratio_jax_hess", "ratio_best_hess",
    "ceiling_s", "hess_over_ceiling", "gemm_gflops",
    "jax_grad_compile_s", "jax_hess_compile_s",
    "loss_err", "grad_err", "hess_err", "jax_grad_err", "jax_hess_err",
    "symflow_grad_min_s", "torch_grad_min_s", "jax_grad_min_s", "ratio_best_grad_min",
    "symflow_hess_min_s", "torch_hess_min_s", "jax_hess_min_s", "ratio_best_hess_min",
    "hess_over_ceiling_min",
    "symflow_setup_s",
    "symflow_grad_reps", "symflow_hess_reps", "torch_grad_reps", "torch_hess_autograd_reps",
    "torch_hess_func_reps", "jax_grad_reps", "jax_hess_reps",
    "symflow_grad_cpu_util", "symflow_hess_cpu_util", "torch_grad_cpu_util", "torch_hess_autograd_cpu_util",
    "torch_hess_func_cpu_util", "jax_grad_cpu_util", "jax_hess_cpu_util",
    "notes",
]


def write_csv(rows, header, threads, quiet=False):
    RESULTS.mkdir(parents=True, exist_ok=True)
    depth = header.get("depth", 1)
    path = RESULTS / (f"peers_{threads}t.csv" if depth == 1 else f"peers_d{depth}_{threads}t.csv")
    with open(path, "w", newline="") as f:
        f.write("# " + json.dumps(header) + "\n")
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    if not quiet:
        print(f"\n# wrote {path}", flush=True)


def print_row(r, first=False):
    if first:
        print("# progress: k N | grad symflow torch jax | hess symflow torch jax", flush=True)
    print(f"  k={r['k']} N={r['N']} | {fmt_t(r.get('symflow_grad_s'))} {fmt_t(r.get('torch_grad_s'))} "
          f"{fmt_t(r.get('jax_grad_s'))} | {fmt_t(r.get('symflow_hess_s'))} {fmt_t(r.get('torch_hess_s'))} "
          f"{fmt_t(r.get('jax_hess_s'))}", flush=True)


def print_tables(rows, header):
    th = header["threads"]
    nets = "1 hidden layer" if header["depth"] == 1 else f"{header['depth']} hidden layers of k"
    print(f"\n## Loss + gradient, float64, {th} thread(s), {nets}  (ratio = peer time / symflow time; "
          f"median wall time; (min): the same ratio from each tool's fastest call)")
    h = ["k", "P", "N", "symflow", "torch", "jax", "torch/sf", "jax/sf", "best/sf", "(min)", "jax compile",
         "grad err"]
    body = [[r["k"], r["P"], r["N"], fmt_t(r.get("symflow_grad_s")), fmt_t(r.get("torch_grad_s")),
             fmt_t(r.get("jax_grad_s")), fmt_r(r.get("ratio_torch_grad")), fmt_r(r.get("ratio_jax_grad")),
             fmt_r(r.get("ratio_best_grad")), fmt_r(r.get("ratio_best_grad_min")),
             fmt_t(r.get("jax_grad_compile_s")), fmt_e(r.get("grad_err"))]
            for r in rows]
    table(h, body)
    print(f"\n## Full Hessian, float64, {th} thread(s), {nets}  (ceiling = N*P^2 / {header['gemm_gflops']:.1f} GFLOP/s; "
          f"torch = faster of autograd.functional (af) / func (fn))")
    h = ["k", "P", "N", "symflow", "torch", "jax", "torch/sf", "jax/sf", "best/sf", "(min)", "ceiling",
         "sf/ceil", "(min)", "jax compile", "hess err"]
    body = []
    for r in rows:
        m = {"autograd.functional": " af", "func": " fn"}.get(r.get("torch_hess_method"), "")
        body.append([r["k"], r["P"], r["N"], fmt_t(r.get("symflow_hess_s")), fmt_t(r.get("torch_hess_s")) + m,
                     fmt_t(r.get("jax_hess_s")), fmt_r(r.get("ratio_torch_hess")), fmt_r(r.get("ratio_jax_hess")),
                     fmt_r(r.get("ratio_best_hess")), fmt_r(r.get("ratio_best_hess_min")), fmt_t(r.get("ceiling_s")),
                     fmt_r(r.get("hess_over_ceiling")), fmt_r(r.get("hess_over_ceiling_min")),
                     fmt_t(r.get("jax_hess_compile_s")), fmt_e(r.get("hess_err"))])
    table(h, body)
    errs = [r.get(e) for r in rows for e in ("grad_err", "hess_err") if r.get(e) is not None]
    if errs:
        worst = max(errs)
        print(f"\naccuracy vs torch float64 (max|a-b|/max|b|): worst {worst:.1e} "
              f"({'OK' if worst <= ACC_TOL else 'FAIL'}, limit {ACC_TOL:g})")
    notes = [(r["k"], r["N"], r["notes"]) for r in rows if r.get("notes")]
    if notes:
        print("\nnotes:")
        for k, N, n in notes:
            for part in n.split("; "):
                print(f"  k={k} N={N}: {part}")
    print(f"load average: start {header['loadavg_start']:.2f}, end {header['loadavg_end']:.2f}, "
          f"{header['cpus']} cpus "
          f"(on a shared machine wall times are noisy; cpu/wall per measurement is in the CSV)")


def table(h, body):
    w = [max(len(str(x)) for x in col) for col in zip(h, *body)]
    print("  ".join(str(x).rjust(n) for x, n in zip(h, w)))
    for b in body:
        print("  ".join(str(x).rjust(n) for x, n in zip(b, w)))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--ks", type=int, nargs="+",
                    help="hidden widths (default 10 50 100; 10 20 50 with --depth >= 2)")
    ap.add_argument("--depth", type=int, default=1,
                    help="hidden layers of k neurons each (default 1, the reference grid)")
    ap.add_argument("--ns", type=int, nargs="+", help="sample counts (default 10 ... 100000)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--quick", action="store_true", help="small subset for smoke runs (k=10, N<=1000)")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of repeats per measurement (default 1)")
    ap.add_argument("--max-call", type=float, default=30.0,
                    help="skip a call predicted to take longer than this many seconds (default 30)")
    ap.add_argument("--mem-gb", type=float, default=None,
                    help="skip a call estimated to need more memory (default: half of MemAvailable)")
    ap.add_argument("--cache-dir", help="SYMFLOW_CACHE_DIR for this run (default: leave the user's cache)")
    ap.add_argument("--no-chunked-ref", action="store_true",
                    help="do not compute an untimed chunked torch Hessian where the timed ones were skipped")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.depth < 1:
        ap.error(f"--depth must be at least 1 (hidden layers), got {args.depth}")
    if args.cache_dir:
        os.environ["SYMFLOW_CACHE_DIR"] = str(Path(args.cache_dir).resolve())
    if args.worker:
        if len(args.threads) != 1:
            ap.error("--worker takes exactly one --threads value")
        return worker(args)
    return parent(args, argv)


if __name__ == "__main__":
    sys.exit(main())

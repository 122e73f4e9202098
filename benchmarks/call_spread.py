"""How the times of threaded calls spread: percentiles of single calls, round by round.

    python benchmarks/call_spread.py [--ks 10] [--ns 1000] [--threads 1 2] [--rounds 4]

A median hides how a threaded call's time depends on the slower of its threads.  A call
split into equal ranges waits for the slower thread, so on a VM whose vCPUs now and
then run at different speeds (or share a core) the times of single calls fall into
groups, and the groups change from one second to the next.  This times ``hessian``
(and with --gradient ``loss_and_gradient``) of the reference nets (2 inputs, one
softplus hidden layer of k neurons with bias, linear output with bias) call by call
for --seconds per round, the thread counts in turn, for --rounds rounds, and prints
the 10th, 25th, 50th, 75th and 90th percentiles of each round and their spread over
the rounds.  Results go to stdout and to benchmarks/results/call_spread.csv.
"""

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import symflow  # noqa: E402
from _results import write_rows  # noqa: E402  (benchmarks/_results.py)

PERCENTILES = (10, 25, 50, 75, 90)


def call_times(fn, seconds):
    """Wall times (s) of the calls of ``fn`` made in ``seconds``, after one untimed call."""
    fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.array(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[10])
    ap.add_argument("--ns", type=int, nargs="+", default=[1000])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds of calls per round")
    ap.add_argument("--gradient", action="store_true", help="also time loss_and_gradient")
    args = ap.parse_args()
    if min(args.threads) < 1 or args.rounds < 1 or args.seconds <= 0:
        raise SystemExit("--threads, --rounds and --seconds must be positive")
    rng = np.random.default_rng(0)
    rows = []
    head = " ".join(f"{'p' + str(q):>7}" for q in PERCENTILES)
    print(f"{'k':>4} {'P':>5} {'N':>7} {'call':>18} {'threads':>7} {'round':>5} {'calls':>7} "
          f"{head}  (us)")
    for k in args.ks:
        arch = symflow.MLP(2, [(k, "softplus", True), (1, "identity", True)])
        p = arch.random_params(seed=1)
        for n in args.ns:
            X, Y = rng.normal(size=(n, 2)), rng.normal(size=(n, 1))
            nets = {t: symflow.Net(arch, X, Y, threads=t) for t in args.threads}
            calls = ["hessian"] + (["loss_and_gradient"] if args.gradient else [])
            for name in calls:
                for r in range(args.rounds):
                    for t, net in nets.items():   # thread counts alternate within a round
                        fn = getattr(net, name)
                        us = call_times(lambda fn=fn, p=p: fn(p), args.seconds) * 1e6
                        q = np.percentile(us, PERCENTILES)
                        row = {"k": k, "P": arch.nparams, "N": n, "call": name, "threads": t,
                               "round": r + 1, "calls": len(us)}
                        row.update({f"p{pc}_us": float(v) for pc, v in zip(PERCENTILES, q)})
                        rows.append(row)
                        cols = " ".join(f"{v:7.1f}" for v in q)
                        print(f"{k:>4} {arch.nparams:>5} {n:>7} {name:>18} {t:>7} {r + 1:>5} "
                              f"{len(us):>7} {cols}")
    print("\nround spread (smallest - largest over the rounds):")
    keys = sorted({(r["k"], r["N"], r["call"], r["threads"]) for r in rows})
    for key in keys:
        sel = [r for r in rows if (r["k"], r["N"], r["call"], r["threads"]) == key]
        spans = " ".join(f"p{pc} {min(r[f'p{pc}_us'] for r in sel):.1f}-"
                         f"{max(r[f'p{pc}_us'] for r in sel):.1f}" for pc in (50, 75, 90))
        print(f"  k = {key[0]}, N = {key[1]}, {key[2]}, {key[3]} thread(s): {spans} us")
    path = write_rows("call_spread", rows)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

"""``symflow demo``: a teacher–student experiment end to end, in under a minute.

A softplus teacher network labels standard Gaussian inputs; a student of the
same architecture starts from a random point and

1. follows the gradient flow on the finite data set, then refines to a
   critical point (Newton-type with the exact Hessian);
2. does the same on infinite Gaussian data (the exact expected loss), from the
   same start, when ``symflow.GaussianNet`` exists — otherwise the table says
   so and no number is made up;
3. runs plain gradient descent on the finite data, to show how far discrete
   steps stray from the flow.

It prints one table (loss, gradient norm, critical-point type, time per phase)
plus trajectory distances, and writes PNG figures and the Results to ``outdir``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import numpy as np

from .dynamics import train
from .result import Result, trajectory_distance

__all__ = ["run_demo", "DEMO_SETUP"]

#: The embedded experiment. ``fast`` shrinks the data and the time budgets for CI.
DEMO_SETUP: dict[str, Any] = {
    "din": 2,
    "layers": [(3, "softplus", True), (1, "identity", True)],
    "teacher_seed": 2,
    "student_seed": 13,
    "data_seed": 1,
    "nsamples": {"full": 2000, "fast": 300},
    "maxT": {"full": 1e4, "fast": 1e3},
    "maxtime_ode": {"full": 20.0, "fast": 6.0},
    "maxtime_optim": {"full": 10.0, "fast": 3.0},
    "gd_lr": 0.05,
    "gd_iterations": {"full": 4000, "fast": 600},
    # the flow is the reference of the distance plots: sample it densely (P floats each)
    "n_samples_trajectory": {"flow": 400, "gd": 100},
}


def _teacher_params(arch: Any, seed: int) -> np.ndarray:
    # Standard normal weights *and biases*: with the zero biases of the default
    # initialisation the teacher's units are nearly linear and partly redundant.
    return np.random.default_rng(seed).standard_normal(arch.nparams)


def _gaussian_net(symflow: Any, arch: Any, teacher_p: np.ndarray) -> tuple[Any, str]:
    """The infinite-data problem, or None and the reason it is unavailable."""
    cls = getattr(symflow, "GaussianNet", None)
    teacher_cls = getattr(symflow, "TeacherNet", None)
    if cls is None or teacher_cls is None:
        return None, "skipped: symflow.GaussianNet is not available in this version"
    try:
        return cls(teacher_cls(arch, teacher_p), arch), ""
    except Exception as exc:  # noqa: BLE001 - reported in the table, never faked
        return None, f"skipped: GaussianNet(TeacherNet(teacher, params), student) failed: {exc}"


def _row(name: str, res: Result) -> list[str]:
    first = next(iter(res.phases.values()))
    refine = res.phases.get("refine")
    return [
        name,
        f"{res.loss:.3e}",
        f"{res.gnorm:.2e}",
        res.kind,
        f"{first.time:.2f}s ({first.stop_reason})",
        "-" if refine is None or refine.stop_reason == "skipped"
        else f"{refine.time:.2f}s ({refine.stop_reason})",
    ]


def _table(rows: list[list[str]]) -> str:
    head = ["run", "loss", "gnorm(∞)", "critical point", "flow/descent", "refine"]
    rows = [head] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(outdir: str | os.PathLike[str] = "symflow-demo", fast: bool = False,
             verbosity: int = 1, stream: TextIO | None = None) -> dict[str, Any]:
    """Run the embedded teacher–student demo; print a table; write figures and results.

    Returns a dict with ``results`` (name -> Result), ``table`` (the printed
    text), ``distances`` (name -> TrajectoryDistance), ``figures`` (paths),
    ``files`` (saved results), ``infinite`` (``"ran"`` or why it was skipped)
    and ``time`` (seconds). ``verbosity=0`` prints nothing.

    Example:
        >>> out = run_demo("symflow-demo", fast=True, verbosity=0)  # doctest: +SKIP
        >>> out["results"]["flow (finite data)"].kind                # doctest: +SKIP
        'minimum'
    """
    import symflow  # the package's public face: MLP, Net (and GaussianNet if present)

    from .plots import plot_loss_curves, plot_spectrum, plot_trajectory_distance

    start = time.perf_counter()
    out = stream if stream is not None else sys.stdout
    mode = "fast" if fast else "full"
    setup = DEMO_SETUP
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)

    def say(text: str) -> None:
        if verbosity > 0:
            out.write(text + "\n")
            out.flush()

    arch = symflow.MLP(setup["din"], setup["layers"])
    n = setup["nsamples"][mode]
    say(f"symflow demo ({mode}): teacher and student {arch!r}, {n} Gaussian samples, "
        f"P = {arch.nparams}")
    t0 = time.perf_counter()
    X = np.random.default_rng(setup["data_seed"]).standard_normal((n, setup["din"]))
    pt = _teacher_params(arch, setup["teacher_seed"])
    Y = symflow.Net(arch, X, np.zeros((n, 1))).predict(pt)
    net = symflow.Net(arch, X, Y)
    say(f"  compiled/loaded the C kernels in {time.perf_counter() - t0:.2f}s")
    p0 = arch.random_params(seed=setup["student_seed"])
    common = dict(maxT=setup["maxT"][mode], maxtime_ode=setup["maxtime_ode"][mode],
                  maxtime_optim=setup["maxtime_optim"][mode],
                  n_samples_trajectory=setup["n_samples_trajectory"]["flow"], verbosity=verbosity)

    results: dict[str, Result] = {}
    results["flow (finite data)"] = train(net, p0, **common)
    gnet, infinite = _gaussian_net(symflow, arch, pt)
    if gnet is not None:
        results["flow (infinite data)"] = train(gnet, p0, **common)
        infinite = "ran"
    results["gradient descent (finite)"] = train(
        net, p0, method="gd", lr=setup["gd_lr"], maxiterations_ode=setup["gd_iterations"][mode],
        maxiterations_optim=0,
        **{**common, "n_samples_trajectory": setup["n_samples_trajectory"]["gd"]})

    flow = results["flow (finite data)"]
    distances = {"gradient descent vs flow (finite data)":
                 trajectory_distance(results["gradient descent (finite)"], flow)}
    if "flow (infinite data)" in results:
        distances["infinite vs finite data (equal times)"] = trajectory_distance(
            results["flow (infinite data)"], flow, matching="time")

    table = _table([_row(name, r) for name, r in results.items()])
    lines = [table, ""]
    for name, d in distances.items():
        if len(d.distances):
            lines.append(f"trajectory distance, {name}: max {np.max(d.distances):.3e}, "
                         f"final {d.distances[-1]:.3e}")
    if infinite != "ran":
        lines.append(f"infinite-data run: {infinite}")
    report = "\n".join(lines)
    say(report)

    figures = [
        plot_loss_curves(results, os.path.join(outdir, "loss_curves.png"),
                         title="teacher–student: loss along training"),
        plot_trajectory_distance(distances, os.path.join(outdir, "trajectory_distance.png")),
    ]
    if flow.summary is not None:
        figures.append(plot_spectrum(flow, os.path.join(outdir, "spectrum.png")))
    files = [r.save(os.path.join(outdir, _slug(name) + ".npz")) for name, r in results.items()]
    elapsed = time.perf_counter() - start
    say(f"figures: {', '.join(figures)}\nresults: {', '.join(files)}\n"
        f"total {elapsed:.1f}s")
    return {"results": results, "table": report, "distances": distances, "figures": figures,
            "files": files, "infinite": infinite, "time": elapsed}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")

"""PNG figures of training runs: loss curves on log–log axes and trajectory distances.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no GUI backend, no global state), so they work in worker processes, on CI
and inside notebooks alike.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from .result import Result, TrajectoryDistance

__all__ = ["plot_loss_curves", "plot_trajectory_distance", "plot_spectrum"]


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _labelled(results: Result | Sequence[Result] | Mapping[str, Result],
              ) -> list[tuple[str, Result]]:
    if isinstance(results, Result):
        return [("run", results)]
    if isinstance(results, Mapping):
        return list(results.items())
    return [(f"run {i}", r) for i, r in enumerate(results)]


def _positive(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (t > 0) & (y > 0) & np.isfinite(y)
    return t[keep], y[keep]


def plot_loss_curves(results: Result | Sequence[Result] | Mapping[str, Result],
                     path: str | os.PathLike[str], title: str | None = None) -> str:
    """Loss and gradient norm against ODE time, log–log, one line per run; returns the path.

    Points at t = 0 or with zero loss cannot be shown on log axes and are left
    out; the refinement phase (which has no time) is marked by a dot at the
    last time, at the refined loss.

    Example:
        >>> import numpy as np, tempfile, os
        >>> r = Result(x=np.zeros(1), loss=1e-3, gnorm=1e-2, init=np.ones(1),
        ...            loss_curve_times=np.array([0.0, 1.0, 10.0]),
        ...            loss_curve_loss=np.array([1.0, 0.1, 0.01]),
        ...            loss_curve_gnorm=np.array([1.0, 0.3, 0.1]))
        >>> path = os.path.join(tempfile.mkdtemp(), "loss.png")
        >>> plot_loss_curves({"demo": r}, path) == path
        True
    """
    fig = _figure(6.4, 6.0)
    ax_l, ax_g = fig.subplots(2, 1, sharex=True)
    for label, res in _labelled(results):
        t, l = _positive(res.loss_curve_times, res.loss_curve_loss)
        line = ax_l.plot(t, l, label=label)[0]
        tg, g = _positive(res.loss_curve_times, res.loss_curve_gnorm)
        ax_g.plot(tg, g, color=line.get_color())
        if "refine" in res.phases and res.phases["refine"].stop_reason != "skipped" and t.size:
            if res.loss > 0:
                ax_l.plot([t[-1]], [res.loss], "o", color=line.get_color(), ms=4)
            if res.gnorm > 0:
                ax_g.plot([t[-1]], [res.gnorm], "o", color=line.get_color(), ms=4)
    for ax in (ax_l, ax_g):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    ax_l.set_ylabel("loss")
    ax_g.set_ylabel("gradient ∞-norm")
    ax_g.set_xlabel("ODE time t")
    if ax_l.get_legend_handles_labels()[0]:
        ax_l.legend(fontsize="small")
    ax_l.set_title(title or "loss along training (dots: after refinement)")
    return _save(fig, path)


def plot_trajectory_distance(distances: Mapping[str, TrajectoryDistance] | TrajectoryDistance,
                             path: str | os.PathLike[str], title: str | None = None) -> str:
    """Distance between trajectories against reference time (log–log); returns the path.

    Example:
        >>> import numpy as np, tempfile, os
        >>> d = TrajectoryDistance(np.array([0.0, 0.1, 0.2]), np.array([0.0, 1.0, 10.0]),
        ...                        np.arange(3))
        >>> plot_trajectory_distance(d, os.path.join(tempfile.mkdtemp(), "d.png")).endswith(".png")
        True
    """
    if isinstance(distances, TrajectoryDistance):
        distances = {"distance": distances}
    fig = _figure()
    ax = fig.subplots()
    for label, d in distances.items():
        t, y = _positive(np.asarray(d.times), np.asarray(d.distances))
        ax.plot(t, y, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("ODE time t (reference trajectory)")
    ax.set_ylabel("Euclidean distance in parameter space")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.set_title(title or "distance between trajectories")
    return _save(fig, path)


def plot_spectrum(result: Result, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Hessian eigenvalues at the final point (symlog scale), zero band shaded; returns the path.

    Example:
        >>> import numpy as np, tempfile, os
        >>> from symflow.result import critical_point_summary
        >>> lam = np.array([-1e-3, 1e-9, 2.0])
        >>> r = Result(x=np.zeros(3), loss=0.0, gnorm=0.0, init=np.zeros(3),
        ...            hessian_eigenvalues=lam, summary=critical_point_summary(lam))
        >>> plot_spectrum(r, os.path.join(tempfile.mkdtemp(), "s.png")).endswith(".png")
        True
    """
    lam = np.sort(np.asarray(result.hessian_eigenvalues))
    fig = _figure()
    ax = fig.subplots()
    tol = result.summary["tol"] if result.summary else 0.0
    ax.plot(np.arange(lam.size), lam, "o", ms=4)
    if tol > 0:
        ax.set_yscale("symlog", linthresh=tol)
        ax.axhspan(-tol, tol, color="0.85", label=f"|λ| ≤ {tol:.1e} counted as zero")
        ax.legend(fontsize="small")
    ax.set_xlabel("index")
    ax.set_ylabel("Hessian eigenvalue")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"spectrum at the final point: {result.kind}")
    return _save(fig, path)

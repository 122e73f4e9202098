"""What a training run found: the :class:`Result` record, its file format and comparisons.

A :class:`Result` is plain data (NumPy arrays, numbers, strings), so it pickles,
travels between processes and is written by :meth:`Result.save` to a single
``.npz`` file: every array is stored as an array, everything else as one JSON
document inside the same archive. Loading needs no pickle (``allow_pickle=False``),
so a result file is safe to open and readable from any NumPy, and the round trip
is exact (floats in the JSON part are written with ``repr`` precision; non-finite
floats are tagged so that strict JSON readers accept the document).

The critical-point summary classifies a point by the signs of its Hessian
eigenvalues; :func:`trajectory_distance` compares two runs the way the peer
package MLPGradientFlow.jl does (``trajectory_distance`` in its ``src/utils.jl``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from .errors import SymflowError

__all__ = [
    "Result",
    "PhaseInfo",
    "ResultFileError",
    "TrajectoryDistance",
    "critical_point_summary",
    "load_result",
    "trajectory_distance",
]

#: Version of the on-disk layout written by :meth:`Result.save`.
FORMAT_VERSION = 1
_FORMAT_NAME = "symflow-result"


class ResultFileError(SymflowError, ValueError):
    """A file is not a symflow result, or was written by an incompatible version."""


# --------------------------------------------------------------------------- phases


@dataclass
class PhaseInfo:
    """What happened in one phase ("flow", "descent" or "refine") of :func:`symflow.train`.

    ``stop_reason`` is one of: ``"maxT"`` (ODE time reached), ``"maxtime"`` (wall
    time), ``"maxiterations"``, ``"minloss"``, ``"min_gnorm"``, ``"patience"``,
    ``"converged"`` (the optimizer's own test), ``"interrupted"`` (Ctrl-C),
    ``"nonfinite"``, ``"failed"``, ``"skipped"``.

    Example:
        >>> PhaseInfo("refine", method="trust-exact", stop_reason="min_gnorm").stop_reason
        'min_gnorm'
    """

    name: str
    method: str = ""
    stop_reason: str = "skipped"
    message: str = ""
    iterations: int = 0
    evaluations: int = 0
    time: float = 0.0
    loss: float = math.nan
    gnorm: float = math.nan
    t: float = 0.0  # ODE time reached (flow/descent); 0 for refine
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhaseInfo:
        return cls(**d)


# ------------------------------------------------------------- critical point summary


def critical_point_summary(
    eigenvalues: np.ndarray, gnorm: float = math.nan, rtol: float = 1e-8, atol: float = 0.0
) -> dict[str, Any]:
    """Classify a point from its Hessian eigenvalues.

    An eigenvalue counts as zero when ``|λ| <= max(atol, rtol * max|λ|)``. The
    default ``rtol = 1e-8`` (about ``sqrt(eps)``) is chosen because at a point that
    is critical only up to a gradient of size ``g``, eigenvalues that are zero
    at the exact critical point are perturbed by O(g) and the Hessian itself is
    known to ~``P * eps * max|λ|``; ``sqrt(eps)`` sits well above both and well
    below the curvature of genuine directions in the problems we target.

    ``kind`` is ``"minimum"`` (all positive), ``"maximum"`` (all negative),
    ``"saddle"`` (both signs present, whatever else), or ``"degenerate"``
    (some zero eigenvalues and only one sign otherwise: the second-order test
    cannot decide). ``critical`` is not decided here; see :attr:`Result.converged`.

    Example:
        >>> s = critical_point_summary(np.array([-1.0, 0.0, 2.0]))
        >>> s["kind"], s["negative"], s["zero"], s["positive"]
        ('saddle', 1, 1, 1)
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    scale = float(np.max(np.abs(lam))) if lam.size else 0.0
    tol = max(float(atol), float(rtol) * scale)
    neg = int(np.sum(lam < -tol))
    pos = int(np.sum(lam > tol))
    zero = int(lam.size - neg - pos)
    if neg and pos:
        kind = "saddle"
    elif zero:
        kind = "degenerate"
    elif neg:
        kind = "maximum"
    else:
        kind = "minimum"
    return {
        "kind": kind,
        "negative": neg,
        "zero": zero,
        "positive": pos,
        "tol": tol,
        "rtol": float(rtol),
        "atol": float(atol),
        "min_eigenvalue": float(lam.min()) if lam.size else math.nan,
        "max_eigenvalue": float(lam.max()) if lam.size else math.nan,
        "gnorm": float(gnorm),
    }


# --------------------------------------------------------------------------- result

# Fields stored as arrays in the archive; everything else goes to the JSON part.
_ARRAY_FIELDS = (
    "x",
    "init",
    "ode_x",
    "trajectory_times",
    "trajectory_points",
    "loss_curve_times",
    "loss_curve_loss",
    "loss_curve_gnorm",
    "refine_loss",
    "refine_gnorm",
    "hessian_eigenvalues",
    "tauinv",
)


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass(eq=False)
class Result:
    """Everything a call of :func:`symflow.train` found.

    Attributes:
        x, loss, gnorm: final point (best point of the last phase that ran), its
            loss and ∞-norm of the gradient.
        init: the starting point.
        ode_x, ode_loss, ode_gnorm: best point of the flow/descent phase.
        phases: ``{"flow"|"descent": PhaseInfo, "refine": PhaseInfo}``.
        converged: ``gnorm <= min_gnorm`` at ``x`` (or ``loss <= minloss``).
        interrupted: Ctrl-C stopped the run; everything before it is kept.
        trajectory_times, trajectory_points: the flow (or descent, with time
            ``lr * iteration``) sampled at log-spaced times; shape ``(K,)`` and
            ``(K, P)``.
        loss_curve_times, loss_curve_loss, loss_curve_gnorm: loss and gradient
            norm along the flow/descent, thinned to a log time grid.
        refine_loss, refine_gnorm: loss and gradient norm of each improvement
            found while refining.
        hessian_eigenvalues, summary: spectrum at ``x`` and its classification
            (:func:`critical_point_summary`), empty/None when not computed.
        options: the options the run used (JSON-able; ``tauinv`` is in ``tauinv``).
        total_time: wall seconds of the whole call.

    Example:
        >>> import numpy as np
        >>> r = Result(x=np.zeros(2), loss=0.0, gnorm=0.0, init=np.ones(2))
        >>> r.nparams
        2
    """

    x: np.ndarray
    loss: float
    gnorm: float
    init: np.ndarray
    ode_x: np.ndarray = field(default_factory=_empty)
    ode_loss: float = math.nan
    ode_gnorm: float = math.nan
    phases: dict[str, PhaseInfo] = field(default_factory=dict)
    converged: bool = False
    interrupted: bool = False
    trajectory_times: np.ndarray = field(default_factory=_empty)
    trajectory_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    loss_curve_times: np.ndarray = field(default_factory=_empty)
    loss_curve_loss: np.ndarray = field(default_factory=_empty)
    loss_curve_gnorm: np.ndarray = field(default_factory=_empty)
    refine_loss: np.ndarray = field(default_factory=_empty)
    refine_gnorm: np.ndarray = field(default_factory=_empty)
    hessian_eigenvalues: np.ndarray = field(default_factory=_empty)
    summary: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    tauinv: np.ndarray = field(default_factory=_empty)
    total_time: float = 0.0
    problem: str = ""

    ok = True  # a successful run; parallel.FailedStart has ok = False

    # ------------------------------------------------------------ conveniences
    @property
    def nparams(self) -> int:
        """Number of parameters."""
        return int(np.asarray(self.x).size)

    @property
    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, points)`` of the sampled flow/descent trajectory."""
        return self.trajectory_times, self.trajectory_points

    @property
    def loss_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, losses)`` along the flow/descent phase."""
        return self.loss_curve_times, self.loss_curve_loss

    @property
    def kind(self) -> str:
        """Critical-point type from the Hessian spectrum.

        ``"not critical"`` when the run did not converge (the spectrum's signs
        are then in ``summary["kind"]``), ``"unknown"`` without a spectrum.
        """
        if not self.summary:
            return "unknown"
        return self.summary["kind"] if self.converged else "not critical"

    def __repr__(self) -> str:
        stops = ", ".join(f"{k}: {v.stop_reason}" for k, v in self.phases.items())
        flag = " INTERRUPTED" if self.interrupted else ""
        return (
            f"Result(P={self.nparams}, loss={self.loss:.6g}, gnorm={self.gnorm:.3g}, "
            f"kind={self.kind}, converged={self.converged}{flag}; {stops})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _ARRAY_FIELDS:
                if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
                    return False
            elif f.name == "phases":
                if {k: v.to_dict() for k, v in a.items()} != {
                    k: v.to_dict() for k, v in b.items()
                }:
                    return False
            elif not _same(a, b):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable record

    # ------------------------------------------------------------ file format
    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the result to ``path`` (``.npz`` is appended if missing); return the path.

        Example:
            >>> import numpy as np, tempfile, os
            >>> r = Result(x=np.arange(3.0), loss=1.5, gnorm=0.1, init=np.zeros(3))
            >>> d = tempfile.mkdtemp()
            >>> p = r.save(os.path.join(d, "run"))
            >>> load_result(p) == r
            True
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float64) for name in _ARRAY_FIELDS}
        meta: dict[str, Any] = {
            "format": _FORMAT_NAME,
            "format_version": FORMAT_VERSION,
        }
        for f in fields(self):
            if f.name in _ARRAY_FIELDS:
                continue
            value = getattr(self, f.name)
            if f.name == "phases":
                value = {k: v.to_dict() for k, v in value.items()}
            meta[f.name] = value
        text = json.dumps(_encode(meta), sort_keys=True, allow_nan=False)
        arrays["__meta__"] = np.array(text)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        return path


def load_result(path: str | os.PathLike[str]) -> Result:
    """Read a :class:`Result` written by :meth:`Result.save` (no pickle involved).

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = Result(x=np.ones(2), loss=0.0, gnorm=0.0, init=np.ones(2)).save(
        ...     os.path.join(tempfile.mkdtemp(), "r.npz"))
        >>> load_result(p).x.tolist()
        [1.0, 1.0]
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ResultFileError(
            f"{path!r} is not a readable .npz archive ({exc}); "
            "pass a file written by Result.save()"
        ) from exc
    with archive:
        if "__meta__" not in archive.files:
            raise ResultFileError(
                f"{path!r} has no symflow metadata; it was not written by Result.save()")
        meta = _decode(json.loads(str(archive["__meta__"][()])))
        if meta.pop("format", None) != _FORMAT_NAME:
            raise ResultFileError(f"{path!r} is not a symflow result file")
        version = meta.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ResultFileError(
                f"{path!r} uses result format {version}, this symflow reads {FORMAT_VERSION}; "
                "load it with the symflow version that wrote it"
            )
        kwargs = {name: np.array(archive[name]) for name in _ARRAY_FIELDS if name in archive.files}
    meta["phases"] = {k: PhaseInfo.from_dict(v) for k, v in meta.get("phases", {}).items()}
    kwargs.update(meta)
    return Result(**kwargs)


def _encode(obj: Any) -> Any:
    """JSON-able copy of ``obj``; non-finite floats become ``{"__float__": "inf"}`` etc."""
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(obj, np.ndarray):
        return _encode(obj.tolist())
    if obj is None or isinstance(obj, str):
        return obj
    return repr(obj)


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


# ------------------------------------------------------------ trajectory distance


class TrajectoryDistance(NamedTuple):
    """Distances between a trajectory and a reference trajectory.

    ``distances[i]`` is the Euclidean distance from the i-th point of the
    compared trajectory to its matched reference point, ``times[i]`` the
    reference time of that point, ``indices[i]`` its index in the reference.
    """

    distances: np.ndarray
    times: np.ndarray
    indices: np.ndarray


def _points(obj: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(obj, Result):
        return np.asarray(obj.trajectory_times), np.asarray(obj.trajectory_points)
    times, points = obj
    return np.asarray(times, dtype=np.float64), np.asarray(points, dtype=np.float64)


def trajectory_distance(res_a: Any, res_b: Any, matching: str = "closest") -> TrajectoryDistance:
    """Distance of trajectory ``res_a`` from the reference trajectory ``res_b``.

    Both arguments are :class:`Result` objects or ``(times, points)`` pairs.

    ``matching="closest"`` follows MLPGradientFlow.jl (``trajectory_distance`` in
    ``src/utils.jl`` of jbrea/MLPGradientFlow.jl): walk through the points of
    ``res_a`` in time order; for each, move forward along the reference from the
    previously matched index while the Euclidean distance does not increase,
    and record that distance, the reference time and index. The search is
    monotone, so a trajectory that retraces the reference scores ~0 even if it
    runs at another speed (as gradient descent vs. flow, or finite vs. infinite
    data). It stops once the end of the reference is matched.

    ``matching="time"`` compares the points at the times both trajectories
    share (runs with equal ``maxT`` and ``n_samples_trajectory`` sample the
    same grid), which measures how far apart they are at equal ODE time.

    Example:
        >>> import numpy as np
        >>> t = np.array([0.0, 1.0, 2.0])
        >>> a = (t, np.array([[0.0], [1.0], [2.0]]))
        >>> b = (t, np.array([[0.0], [1.5], [2.0]]))
        >>> trajectory_distance(a, b).distances.tolist()
        [0.0, 0.5, 0.0]
    """
    ta, xa = _points(res_a)
    tb, xb = _points(res_b)
    if xa.ndim != 2 or xb.ndim != 2 or (xa.size and xb.size and xa.shape[1] != xb.shape[1]):
        raise ValueError(
            f"trajectories must be (K, P) arrays with the same P; got {xa.shape} and {xb.shape}"
        )
    if matching == "time":
        common, ia, ib = np.intersect1d(ta, tb, assume_unique=False, return_indices=True)
        d = np.linalg.norm(xa[ia] - xb[ib], axis=1) if common.size else np.zeros(0)
        return TrajectoryDistance(d, common, ib.astype(np.int64))
    if matching != "closest":
        raise ValueError(f"matching must be 'closest' or 'time', not {matching!r}")
    dists: list[float] = []
    idxs: list[int] = []
    j0 = 0
    nb = len(xb)
    if nb == 0:
        return TrajectoryDistance(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    for x in xa:
        best = math.inf
        for j in range(j0, nb):
            dj = float(np.linalg.norm(xb[j] - x))
            if dj <= best:
                best, j0 = dj, j
            else:
                break
        dists.append(best)
        idxs.append(j0)
        if j0 == nb - 1:
            break
    idx = np.asarray(idxs, dtype=np.int64)
    return TrajectoryDistance(np.asarray(dists), tb[idx], idx)

"""Training dynamics: follow the gradient flow, or descend, then refine to a critical point.

:func:`train` runs up to two phases on any *problem* object that has
``nparams``, ``loss(p)``, ``gradient(p)``, ``hessian(p)`` (and, used when present,
``loss_and_gradient(p)``; for minibatches ``nsamples`` and ``subset(indices)``):

1. **flow** — the gradient flow ``dp/dt = −τ⁻¹ ⊙ ∇L(p)`` integrated with one of
   SciPy's ODE solvers (RK45, DOP853, RK23 explicit; Radau, BDF, LSODA implicit,
   which get the exact Jacobian ``−τ⁻¹ ⊙ H``). We drive the same solver classes
   :func:`scipy.integrate.solve_ivp` dispatches to, one accepted step at a time,
   so that every stopping rule is checked after each step, the best point so far
   is always at hand, and Ctrl-C loses nothing; the trajectory is sampled from
   each step's dense output at log-spaced times, as ``solve_ivp(t_eval=...)``
   would. Or **descent** instead — gradient descent or Adam with learning rate
   ``lr``, full batch or minibatches of ``batchsize`` rows, ODE time ``lr · k``.
2. **refine** — :func:`scipy.optimize.minimize` from the best point of phase 1,
   Newton-type with the exact Hessian for small problems, quasi-Newton for large.

Parameters with ``τ⁻¹ = 0`` are frozen in every phase: they are left out of the
integrated/optimised vector, so they keep their initial value bit for bit, and
gradient norms (always ∞-norms) are taken over the moving parameters only.

"Best" point of a phase: the lowest loss seen at an accepted point, where two
losses closer than ``1e-12`` relative (round-off of a sum over samples) count
as equal and the smaller gradient norm wins; a point that meets ``min_gnorm``
ends the phase and is returned. The Result records why each phase stopped.
"""

from __future__ import annotations

import difflib
import math
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.integrate
import scipy.optimize

from .errors import ParameterError, SymflowError
from .result import PhaseInfo, Result, critical_point_summary

__all__ = ["train", "OPTIONS", "TrainingOptionError", "epoch_batches", "default_method",
           "default_optim_method", "trajectory_grid"]


class TrainingOptionError(SymflowError, TypeError, ValueError):
    """An option of :func:`train` is unknown or has an invalid value."""


# name -> (default, help). One table drives validation, error messages and docs.
OPTIONS: dict[str, tuple[Any, str]] = {
    "method": (None, "flow solver RK45|DOP853|RK23|Radau|BDF|LSODA, or 'gd'/'adam' for "
                     "descent; default BDF for P <= 1000 moving parameters, else RK45"),
    "reltol": (1e-6, "relative tolerance of the ODE solver"),
    "abstol": (1e-8, "absolute tolerance of the ODE solver"),
    "maxT": (1e10, "largest ODE time (descent: lr * iterations)"),
    "maxtime_ode": (180.0, "wall-clock seconds for the flow/descent phase"),
    "maxiterations_ode": (1_000_000, "accepted ODE steps / descent iterations; 0 skips the phase"),
    "lr": (1e-2, "learning rate of 'gd' and 'adam'"),
    "batchsize": (None, "minibatch size for 'gd'/'adam' (needs problem.subset); None = full batch"),
    "optim_method": (None, "scipy.optimize.minimize method for refinement; default "
                           "trust-exact for P <= 1000 moving parameters, else L-BFGS-B"),
    "maxtime_optim": (120.0, "wall-clock seconds for the refine phase"),
    "maxiterations_optim": (100_000, "optimizer iterations; 0 skips refinement"),
    "minloss": (1e-30, "stop a phase when the loss is <= minloss"),
    "min_gnorm": (1e-12, "stop a phase when the gradient's ∞-norm is <= min_gnorm"),
    "patience": (10_000, "stop a phase after this many checked points without improvement"),
    "tauinv": (1.0, "inverse time scale τ⁻¹: scalar or per-parameter vector; 0 freezes"),
    "n_samples_trajectory": (100, "trajectory samples at log-spaced ODE times (plus t=0)"),
    "verbosity": (1, "0 silent; 1 progress line on a terminal; 2 also phase summaries"),
    "seed": (0, "seed of the minibatch shuffling"),
    "spectrum": (None, "compute the Hessian spectrum at the end (default: P <= 2000)"),
}

EXPLICIT_METHODS = ("RK45", "DOP853", "RK23")
IMPLICIT_METHODS = ("Radau", "BDF", "LSODA")
DESCENT_METHODS = ("gd", "adam")
_HESSIAN_OPTIM = ("trust-exact", "trust-krylov", "trust-ncg", "dogleg", "Newton-CG")
_GRADIENT_OPTIM = ("BFGS", "L-BFGS-B", "CG", "SLSQP")
OPTIM_METHODS = _HESSIAN_OPTIM + _GRADIENT_OPTIM

_ADAM_BETA1, _ADAM_BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8  # Kingma & Ba (2015) defaults
_LOSS_TIE_RTOL = 1e-12
_CURVE_PER_DECADE = 50  # loss-curve thinning: at most this many points per decade of time


def default_method(nparams: int) -> str:
    """Flow solver used when ``method`` is not given.

    Gradient flow becomes stiff near a minimum (curvatures spread over decades),
    where implicit solvers with the exact Jacobian take large steps; their
    dense P×P linear algebra pays off up to about a thousand parameters.

    Example:
        >>> default_method(41), default_method(5000)
        ('BDF', 'RK45')
    """
    return "BDF" if nparams <= 1000 else "RK45"


def default_optim_method(nparams: int) -> str:
    """Refinement method used when ``optim_method`` is not given.

    Example:
        >>> default_optim_method(41), default_optim_method(5000)
        ('trust-exact', 'L-BFGS-B')
    """
    return "trust-exact" if nparams <= 1000 else "L-BFGS-B"


def trajectory_grid(maxT: float, n: int) -> np.ndarray:
    """ODE times at which the trajectory is sampled: 0, then ``n - 1`` log-spaced up to maxT.

    The grid depends only on ``maxT`` and ``n``, so runs with equal settings
    sample identical times and can be compared point by point.

    Example:
        >>> trajectory_grid(1e3, 4).tolist()
        [0.0, 0.001, 1.0, 1000.0]
    """
    if n <= 0:
        return np.zeros(0)
    if n == 1 or not maxT > 0:
        return np.zeros(1)
    lo = min(1e-3, maxT * 1e-3)
    return np.concatenate([[0.0], np.logspace(math.log10(lo), math.log10(maxT), n - 1)])


def epoch_batches(nsamples: int, batchsize: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of the minibatches of one epoch: a shuffled partition of ``range(nsamples)``.

    Every row is in exactly one batch; the last batch is smaller when
    ``batchsize`` does not divide ``nsamples``. Since ``net.subset(idx)``
    normalises by its own row count, ``Σ_b len(b)/N · ∇L_b = ∇L``.

    Example:
        >>> import numpy as np
        >>> [len(b) for b in epoch_batches(10, 4, np.random.default_rng(0))]
        [4, 4, 2]
    """
    if batchsize < 1:
        raise TrainingOptionError(f"batchsize must be a positive integer, got {batchsize}")
    perm = rng.permutation(nsamples)
    return [np.sort(perm[i:i + batchsize]) for i in range(0, nsamples, batchsize)]


# ----------------------------------------------------------------------- options


@dataclass
class _Options:
    method: str
    reltol: float
    abstol: float
    maxT: float
    maxtime_ode: float
    maxiterations_ode: int
    lr: float
    batchsize: int | None
    optim_method: str
    maxtime_optim: float
    maxiterations_optim: int
    minloss: float
    min_gnorm: float
    patience: int
    tauinv: np.ndarray
    n_samples_trajectory: int
    verbosity: int
    seed: int
    spectrum: bool

    def public(self, tauinv_given: Any) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in OPTIONS}
        d["tauinv"] = float(tauinv_given) if np.ndim(tauinv_given) == 0 else "per-parameter"
        return d


def _check_names(options: dict[str, Any]) -> None:
    unknown = [k for k in options if k not in OPTIONS]
    if not unknown:
        return
    parts = []
    for k in unknown:
        close = difflib.get_close_matches(k, OPTIONS, n=2)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        parts.append(f"{k!r}{hint}")
    raise TrainingOptionError(
        f"unknown training option{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
        f"valid options are: {', '.join(OPTIONS)}"
    )


def _canonical(name: str, allowed: tuple[str, ...], what: str) -> str:
    for a in allowed:
        if name.lower() == a.lower():
            return a
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TrainingOptionError(f"unknown {what} {name!r}{hint}; choose one of {', '.join(allowed)}")


def _parse_options(nparams: int, options: dict[str, Any],
                   has_hessian: bool = True) -> tuple[_Options, Any]:
    _check_names(options)
    o = {k: options.get(k, default) for k, (default, _) in OPTIONS.items()}
    tauinv_given = o["tauinv"]
    tau = np.asarray(tauinv_given, dtype=np.float64)
    if tau.ndim == 0:
        tau = np.full(nparams, float(tau))
    if tau.shape != (nparams,):
        raise TrainingOptionError(
            f"tauinv must be a scalar or a vector of length {nparams}, got shape {tau.shape}"
        )
    if not np.all(np.isfinite(tau)) or np.any(tau < 0):
        raise TrainingOptionError("tauinv entries must be finite and >= 0 (0 freezes a parameter)")
    nactive = int(np.count_nonzero(tau))
    # without a Hessian, defaults fall back to methods that need none
    method = o["method"] or (default_method(nactive) if has_hessian else "RK45")
    method = _canonical(str(method), EXPLICIT_METHODS + IMPLICIT_METHODS + DESCENT_METHODS,
                        "method")
    optim = o["optim_method"] or (default_optim_method(nactive) if has_hessian else "L-BFGS-B")
    optim = _canonical(str(optim), OPTIM_METHODS, "optim_method")
    for name in ("reltol", "abstol", "lr"):
        if not (isinstance(o[name], (int, float)) and o[name] > 0):
            raise TrainingOptionError(f"{name} must be a positive number, got {o[name]!r}")
    for name in ("maxT", "maxtime_ode", "maxtime_optim", "minloss", "min_gnorm"):
        if not (isinstance(o[name], (int, float)) and o[name] >= 0) or math.isnan(o[name]):
            raise TrainingOptionError(f"{name} must be a number >= 0, got {o[name]!r}")
    for name in ("maxiterations_ode", "maxiterations_optim", "patience", "n_samples_trajectory"):
        v = o[name]
        if isinstance(v, float) and (math.isinf(v) or v.is_integer()):
            v = sys.maxsize if math.isinf(v) else int(v)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise TrainingOptionError(f"{name} must be an integer >= 0, got {o[name]!r}")
        o[name] = int(v)
    bs = o["batchsize"]
    if bs is not None:
        if not isinstance(bs, (int, np.integer)) or isinstance(bs, bool) or bs < 1:
            raise TrainingOptionError(f"batchsize must be a positive integer or None, got {bs!r}")
        if method not in DESCENT_METHODS:
            raise TrainingOptionError(
                f"batchsize needs a descent method (method='gd' or 'adam'), not {method!r}; "
                "gradient flow always uses the full batch"
            )
        bs = int(bs)
    spectrum = o["spectrum"]
    spectrum = (has_hessian and nactive <= 2000) if spectrum is None else bool(spectrum)
    return _Options(
        method=method, reltol=float(o["reltol"]), abstol=float(o["abstol"]),
        maxT=float(o["maxT"]), maxtime_ode=float(o["maxtime_ode"]),
        maxiterations_ode=o["maxiterations_ode"], lr=float(o["lr"]), batchsize=bs,
        optim_method=optim, maxtime_optim=float(o["maxtime_optim"]),
        maxiterations_optim=o["maxiterations_optim"], minloss=float(o["minloss"]),
        min_gnorm=float(o["min_gnorm"]), patience=o["patience"], tauinv=tau,
        n_samples_trajectory=o["n_samples_trajectory"], verbosity=int(o["verbosity"]),
        seed=int(o["seed"]), spectrum=spectrum,
    ), tauinv_given


# ------------------------------------------------------------------- machinery


class _Stop(Exception):
    """Raised from inside a callback to end a phase; carries the stop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Evaluator:
    """Loss+gradient with a tiny cache: solvers often ask twice for the same point."""

    def __init__(self, problem: Any) -> None:
        self.problem = problem
        self._both = getattr(problem, "loss_and_gradient", None)
        self._cache: OrderedDict[bytes, tuple[float, np.ndarray]] = OrderedDict()

    def loss_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        key = x.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self._both is not None:
            loss, grad = self._both(x)
        else:
            loss, grad = self.problem.loss(x), self.problem.gradient(x)
        value = (float(loss), np.array(grad, dtype=np.float64, copy=True).reshape(-1))
        self._cache[key] = value
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return value

    def hessian(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.problem.hessian(x), dtype=np.float64)


class _Tracker:
    """Best point, patience and wall clock of one phase."""

    def __init__(self, info: PhaseInfo, o: _Options, active: np.ndarray, maxtime: float) -> None:
        self.info, self.o, self.active, self.maxtime = info, o, active, maxtime
        self.best_x: np.ndarray | None = None
        self.best_loss = math.inf
        self.best_gnorm = math.inf
        self.since_best = 0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def observe(self, x: np.ndarray, loss: float, grad: np.ndarray) -> str | None:
        """Record a point; return a stop reason, or None to go on."""
        self.info.evaluations += 1
        g = grad[self.active]
        gnorm = float(np.max(np.abs(g))) if g.size else 0.0
        if not (math.isfinite(loss) and math.isfinite(gnorm)):
            return "nonfinite"
        tie = _LOSS_TIE_RTOL * abs(self.best_loss) if math.isfinite(self.best_loss) else 0.0
        better = loss < self.best_loss - tie or (loss <= self.best_loss + tie
                                                  and gnorm < self.best_gnorm)
        if better:
            self._take(x, loss, gnorm)
        else:
            self.since_best += 1
        if gnorm <= self.o.min_gnorm:
            if not better:
                self._take(x, loss, gnorm)  # a critical point ends the phase: return it
            return "min_gnorm"
        if self.best_loss <= self.o.minloss:
            return "minloss"
        if self.since_best >= self.o.patience:
            return "patience"
        if self.elapsed() > self.maxtime:
            return "maxtime"
        return None

    def _take(self, x: np.ndarray, loss: float, gnorm: float) -> None:
        self.best_x, self.best_loss, self.best_gnorm = x.copy(), loss, gnorm
        self.since_best = 0

    def finish(self, reason: str, fallback_x: np.ndarray) -> np.ndarray:
        self.info.stop_reason = reason
        self.info.time = self.elapsed()
        self.info.loss, self.info.gnorm = self.best_loss, self.best_gnorm
        return self.best_x if self.best_x is not None else fallback_x


class _Progress:
    """One self-overwriting status line on a terminal, after the first two seconds."""

    def __init__(self, verbosity: int, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = verbosity > 0 and bool(isatty and isatty())
        self.verbosity = verbosity
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, phase: str, it: int, t: float, loss: float, gnorm: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.start < 2.0 or now - self.last < 0.5:
            return
        self.last = now
        self.stream.write(f"\r{phase:<8s} {now - self.start:8.1f}s  it {it:<9d} t {t:10.3e}  "
                          f"loss {loss:.6e}  gnorm {gnorm:.3e}  ")
        self.stream.flush()
        self.shown = True

    def phase_done(self, info: PhaseInfo) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False
        if self.verbosity >= 2:
            self.stream.write(
                f"[symflow] {info.name} ({info.method}): {info.stop_reason} after "
                f"{info.iterations} iterations, {info.time:.2f}s, loss {info.loss:.6e}, "
                f"gnorm {info.gnorm:.3e}\n")
            self.stream.flush()


class _Recorder:
    """Trajectory on the log grid and a thinned loss curve of the flow/descent phase."""

    def __init__(self, o: _Options) -> None:
        self.grid = trajectory_grid(o.maxT, o.n_samples_trajectory)
        self.next = 0
        self.times: list[float] = []
        self.points: list[np.ndarray] = []
        self.c_t: list[float] = []
        self.c_l: list[float] = []
        self.c_g: list[float] = []
        self._ratio = 10.0 ** (1.0 / _CURVE_PER_DECADE)

    def curve(self, t: float, loss: float, gnorm: float, force: bool = False) -> None:
        last = self.c_t[-1] if self.c_t else None
        later = last is None or (t > 0 and (last <= 0 or t >= last * self._ratio))
        if force or later:
            if self.c_t and t == self.c_t[-1]:
                self.c_l[-1], self.c_g[-1] = loss, gnorm
                return
            self.c_t.append(t)
            self.c_l.append(loss)
            self.c_g.append(gnorm)

    def sample_step(self, t_new: float, x_at: Callable[[float], np.ndarray]) -> None:
        """Record grid times in (previous step, t_new]; ``x_at(t)`` interpolates."""
        while self.next < len(self.grid) and self.grid[self.next] <= t_new:
            tg = float(self.grid[self.next])
            self.times.append(tg)
            self.points.append(x_at(tg))
            self.next += 1

    def sample_discrete(self, t: float, x: np.ndarray) -> None:
        """Record iterate ``x`` at its own time t once it reaches the next grid time."""
        if self.next < len(self.grid) and self.grid[self.next] <= t:
            self.times.append(t)
            self.points.append(x.copy())
            while self.next < len(self.grid) and self.grid[self.next] <= t:
                self.next += 1

    def finish(self, t: float, x: np.ndarray, loss: float, gnorm: float) -> None:
        if len(self.grid) and (not self.times or t > self.times[-1]):
            self.times.append(t)
            self.points.append(x.copy())
        if math.isfinite(loss):
            self.curve(t, loss, gnorm, force=True)


# ------------------------------------------------------------------------ phases


def _flow_phase(ev: _Evaluator, p0: np.ndarray, o: _Options, active: np.ndarray,
                rec: _Recorder, progress: _Progress) -> tuple[np.ndarray, PhaseInfo, float]:
    info = PhaseInfo("flow", method=o.method)
    tracker = _Tracker(info, o, active, o.maxtime_ode)
    base = p0.copy()
    ta = o.tauinv[active]

    def full(y: np.ndarray) -> np.ndarray:
        x = base.copy()
        x[active] = y
        return x

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        loss, g = ev.loss_grad(full(y))
        ga = g[active]
        if not (math.isfinite(loss) and np.all(np.isfinite(ga))):
            raise _Stop("nonfinite")
        return -ta * ga

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        h = ev.hessian(full(y))[np.ix_(active, active)]
        return -ta[:, None] * h

    def check(t: float, y: np.ndarray, it: int) -> str | None:
        x = full(y)
        loss, g = ev.loss_grad(x)
        reason = tracker.observe(x, loss, g)
        gn = float(np.max(np.abs(g[active]))) if active.any() else 0.0
        rec.curve(t, loss, gn)
        progress.update("flow", it, t, loss, gn)
        return reason

    t_reached = 0.0
    if o.maxiterations_ode == 0:
        info.method, info.stop_reason = "", "skipped"
        rec.sample_step(0.0, lambda t: p0.copy())
        return p0.copy(), info, 0.0
    if not active.any():
        x = tracker.finish("frozen", p0)
        rec.sample_step(0.0, lambda t: p0.copy())
        return x, info, 0.0

    reason: str | None = None
    solver: Any = None
    method = o.method
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reason = check(0.0, p0[active], 0)
            rec.sample_step(0.0, lambda t: p0.copy())
            steps = 0
            while reason is None:
                try:
                    if solver is None:
                        solver = _make_solver(method, rhs, jac, p0[active], o)
                    msg = solver.step()
                    failed = solver.status == "failed"
                except (np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
                    msg, failed = f"{type(exc).__name__}: {exc}", True
                if failed:
                    if steps == 0 and not info.message:
                        fallback = "Radau" if method in EXPLICIT_METHODS else "RK45"
                        info.message = (f"first step of {method} failed ({msg}); "
                                        f"fell back to {fallback}")
                        info.method = f"{method}->{fallback}"
                        method, solver = fallback, None
                        continue
                    reason, info.message = "failed", str(msg)
                    break
                steps += 1
                info.iterations = steps
                t_reached = float(solver.t)
                y_new = solver.y.copy()
                if rec.next < len(rec.grid) and rec.grid[rec.next] <= t_reached:
                    dense = solver.dense_output()
                    rec.sample_step(t_reached,
                                    lambda t: full(y_new if t == t_reached else dense(t)))
                reason = check(t_reached, y_new, steps)
                if reason is None:
                    if solver.status == "finished":
                        reason = "maxT"
                    elif steps >= o.maxiterations_ode:
                        reason = "maxiterations"
    except _Stop as stop:
        reason = stop.reason
    except KeyboardInterrupt:
        reason = "interrupted"
    info.warnings = sorted({str(w.message) for w in caught})
    x = tracker.finish(reason or "failed", p0)
    info.t = t_reached
    x_end = full(solver.y) if solver is not None else p0.copy()
    rec.finish(t_reached, x_end, *_loss_gnorm(ev, x_end, active))
    progress.phase_done(info)
    return x, info, t_reached


def _loss_gnorm(ev: _Evaluator, x: np.ndarray, active: np.ndarray) -> tuple[float, float]:
    try:
        loss, g = ev.loss_grad(x)
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - only for the curve's last point
        return math.nan, math.nan
    return loss, float(np.max(np.abs(g[active]))) if active.any() else 0.0


def _make_solver(method: str, rhs: Any, jac: Any, y0: np.ndarray, o: _Options) -> Any:
    cls = getattr(scipy.integrate, method)
    kwargs: dict[str, Any] = {"rtol": o.reltol, "atol": o.abstol}
    if method in IMPLICIT_METHODS:
        kwargs["jac"] = jac
    return cls(rhs, 0.0, y0.copy(), o.maxT, **kwargs)


def _descent_phase(ev: _Evaluator, problem: Any, p0: np.ndarray, o: _Options,
                   active: np.ndarray, rec: _Recorder,
                   progress: _Progress) -> tuple[np.ndarray, PhaseInfo, float]:
    info = PhaseInfo("descent", method=o.method if o.batchsize is None
                     else f"{o.method} (batchsize {o.batchsize})")
    tracker = _Tracker(info, o, active, o.maxtime_ode)
    if o.maxiterations_ode == 0:
        info.method, info.stop_reason = "", "skipped"
        rec.sample_step(0.0, lambda t: p0.copy())
        return p0.copy(), info, 0.0
    if not active.any():
        rec.sample_step(0.0, lambda t: p0.copy())
        return tracker.finish("frozen", p0), info, 0.0
    rng = np.random.default_rng(o.seed)
    batches: list[np.ndarray] = []
    check_every = 1
    if o.batchsize is not None:
        n = getattr(problem, "nsamples", None)
        if n is None or not hasattr(problem, "subset"):
            raise TrainingOptionError(
                f"batchsize needs a problem with finite data (attributes 'nsamples' and "
                f"'subset'); {type(problem).__name__} has none — use batchsize=None"
            )
        n = int(n)
        check_every = max(1, math.ceil(n / o.batchsize))  # check the full loss once per epoch
    step = o.lr * o.tauinv[active]
    p = p0.copy()
    m = np.zeros(int(active.sum()))
    v = np.zeros_like(m)
    k = 0
    t = 0.0
    reason: str | None = None
    try:
        while True:
            t = k * o.lr
            g_full = None
            if k % check_every == 0:
                loss, g_full = ev.loss_grad(p)
                reason = tracker.observe(p, loss, g_full)
                gn = float(np.max(np.abs(g_full[active])))
                rec.curve(t, loss, gn)
                rec.sample_discrete(t, p)
                progress.update("descent", k, t, loss, gn)
                if reason is not None:
                    break
            else:
                rec.sample_discrete(t, p)
            if k >= o.maxiterations_ode:
                reason = "maxiterations"
                break
            if t >= o.maxT:
                reason = "maxT"
                break
            if check_every > 1 and tracker.elapsed() > o.maxtime_ode:
                reason = "maxtime"
                break
            if o.batchsize is None:
                g = g_full[active]
            else:
                if not batches:
                    batches = epoch_batches(n, o.batchsize, rng)[::-1]
                g = np.asarray(problem.subset(batches.pop()).gradient(p),
                               dtype=np.float64)[active]
                if not np.all(np.isfinite(g)):
                    reason = "nonfinite"
                    break
            if o.method == "adam":
                m = _ADAM_BETA1 * m + (1 - _ADAM_BETA1) * g
                v = _ADAM_BETA2 * v + (1 - _ADAM_BETA2) * g * g
                mhat = m / (1 - _ADAM_BETA1 ** (k + 1))
                vhat = v / (1 - _ADAM_BETA2 ** (k + 1))
                p[active] -= step * mhat / (np.sqrt(vhat) + _ADAM_EPS)
            else:
                p[active] -= step * g
            k += 1
            info.iterations = k
    except KeyboardInterrupt:
        reason = "interrupted"
    x = tracker.finish(reason or "failed", p0)
    info.t = t
    rec.finish(t, p, *_loss_gnorm(ev, p, active))
    progress.phase_done(info)
    return x, info, t


def _refine_phase(ev: _Evaluator, x0: np.ndarray, o: _Options, active: np.ndarray,
                  progress: _Progress) -> tuple[np.ndarray, PhaseInfo, list[float], list[float]]:
    info = PhaseInfo("refine", method=o.optim_method)
    losses: list[float] = []
    gnorms: list[float] = []
    if o.maxiterations_optim == 0:
        info.method = ""
        return x0, info, losses, gnorms
    tracker = _Tracker(info, o, active, o.maxtime_optim)
    if not active.any():
        return tracker.finish("frozen", x0), info, losses, gnorms
    base = x0.copy()

    def full(y: np.ndarray) -> np.ndarray:
        x = base.copy()
        x[active] = y
        return x

    scale = [1.0]  # the optimizer sees loss · scale (see the restart loop below)

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        x = full(y)
        loss, g = ev.loss_grad(x)
        before = tracker.best_loss, tracker.best_gnorm
        reason = tracker.observe(x, loss, g)
        if (tracker.best_loss, tracker.best_gnorm) != before:
            losses.append(tracker.best_loss)
            gnorms.append(tracker.best_gnorm)
            progress.update("refine", info.iterations, 0.0, tracker.best_loss, tracker.best_gnorm)
        if reason is not None:
            raise _Stop(reason)
        return loss * scale[0], g[active] * scale[0]

    def hess(y: np.ndarray) -> np.ndarray:
        return ev.hessian(full(y))[np.ix_(active, active)] * scale[0]

    def callback(xk: np.ndarray, *args: Any) -> None:
        info.iterations += 1

    method = o.optim_method
    kwargs: dict[str, Any] = {"jac": True, "method": method, "callback": callback}
    if method in _HESSIAN_OPTIM:
        kwargs["hess"] = hess
    reason = None
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fun(x0[active])  # start point: may already satisfy a stopping rule
            # SciPy's optimizers carry absolute thresholds (Newton-CG's curvature test
            # 3·eps, trust regions' predicted-reduction test) that stop them early once
            # the gradient is small. So we restart from the best point with the loss
            # rescaled by 1/‖g‖∞ (the peer's ``loss_scale`` trick), as long as a round
            # still improves the gradient norm at least twofold.
            for round_ in range(_REFINE_MAX_ROUNDS):
                g_start = tracker.best_gnorm
                scale[0] = 1.0 / g_start if 0 < g_start < 1 else 1.0
                left = o.maxiterations_optim - info.iterations
                res = scipy.optimize.minimize(fun, tracker.best_x[active],
                                              options=_optim_options(method, left, o, scale[0]),
                                              **kwargs)
                info.message = str(res.message) + (f" (after {round_} restarts)" if round_ else "")
                if info.iterations >= o.maxiterations_optim:
                    reason = "maxiterations"
                    break
                reason = "converged" if res.success else "stalled"
                if not tracker.best_gnorm < 0.5 * g_start:
                    break
    except _Stop as stop:
        reason = stop.reason
    except KeyboardInterrupt:
        reason = "interrupted"
    except (np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
        reason, info.message = "failed", f"{type(exc).__name__}: {exc}"
    info.warnings = sorted({str(w.message) for w in caught})
    x = tracker.finish(reason or "failed", x0)
    progress.phase_done(info)
    return x, info, losses, gnorms


_REFINE_MAX_ROUNDS = 20


def _optim_options(method: str, maxiter: int, o: _Options, scale: float) -> dict[str, Any]:
    """Per-method options: our stopping rules decide, SciPy's own tests are made lenient."""
    opts: dict[str, Any] = {"maxiter": max(1, maxiter)}
    if method in ("trust-exact", "trust-krylov", "trust-ncg", "dogleg", "BFGS", "CG"):
        opts["gtol"] = o.min_gnorm * scale
    elif method == "L-BFGS-B":
        opts.update(gtol=o.min_gnorm * scale, ftol=0.0, maxfun=sys.maxsize >> 1)
    elif method == "Newton-CG":
        opts["xtol"] = 1e-300
    elif method == "SLSQP":
        opts["ftol"] = 0.0
    return opts


# ------------------------------------------------------------------------- train


def train(problem: Any, p0: Any, **options: Any) -> Result:
    """Follow the gradient flow (or descend) from ``p0``, then refine to a critical point.

    ``problem`` needs ``nparams``, ``loss``, ``gradient`` and, for implicit
    solvers, Newton-type refinement and the critical-point summary, ``hessian``
    (without it the defaults become RK45 and L-BFGS-B); ``loss_and_gradient``
    is used when present. ``options`` are listed in
    :data:`OPTIONS` (unknown names raise :class:`TrainingOptionError`). Ctrl-C
    during any phase returns the Result so far with ``interrupted=True``.

    Example:
        >>> import numpy as np
        >>> class Quadratic:            # L(p) = Σ c_i p_i² / 2
        ...     nparams = 2
        ...     c = np.array([1.0, 10.0])
        ...     def loss(self, p): return 0.5 * float(self.c @ p**2)
        ...     def gradient(self, p): return self.c * p
        ...     def hessian(self, p): return np.diag(self.c)
        >>> res = train(Quadratic(), [1.0, 1.0], maxT=5.0, verbosity=0)
        >>> res.phases["refine"].stop_reason, res.kind
        ('min_gnorm', 'minimum')
        >>> bool(res.gnorm <= 1e-12)
        True
    """
    start = time.perf_counter()
    nparams = int(problem.nparams)
    o, tauinv_given = _parse_options(nparams, options, callable(getattr(problem, "hessian", None)))
    p0 = np.array(p0, dtype=np.float64, copy=True).reshape(-1)
    if p0.shape != (nparams,):
        raise ParameterError(
            f"p0 has {p0.size} entries but the problem has {nparams} parameters; "
            "pass a flat float64 vector of length problem.nparams"
        )
    if not np.all(np.isfinite(p0)):
        raise ParameterError("p0 has non-finite entries (nan or inf); start from a finite point")
    active = o.tauinv > 0
    ev = _Evaluator(problem)
    progress = _Progress(o.verbosity)
    rec = _Recorder(o)
    if o.method in DESCENT_METHODS:
        ode_x, first, _ = _descent_phase(ev, problem, p0, o, active, rec, progress)
    else:
        ode_x, first, _ = _flow_phase(ev, p0, o, active, rec, progress)
    interrupted = first.stop_reason == "interrupted"
    ode_loss, ode_gnorm = first.loss, first.gnorm
    if first.stop_reason in ("skipped",) or not math.isfinite(ode_loss):
        if not interrupted:
            ode_loss, ode_gnorm = _loss_gnorm(ev, ode_x, active)
    phases = {first.name: first}
    refine_l: list[float] = []
    refine_g: list[float] = []
    x, loss, gnorm = ode_x, ode_loss, ode_gnorm
    if interrupted:
        phases["refine"] = PhaseInfo("refine", stop_reason="skipped", message="interrupted before")
    else:
        x, info, refine_l, refine_g = _refine_phase(ev, ode_x, o, active, progress)
        phases["refine"] = info
        interrupted = info.stop_reason == "interrupted"
        if info.stop_reason != "skipped" and math.isfinite(info.loss):
            loss, gnorm = info.loss, info.gnorm
        else:
            x = ode_x
    eig = np.zeros(0)
    summary = None
    if o.spectrum and not interrupted and math.isfinite(loss):
        try:
            h = ev.hessian(x)
            if not active.all():
                h = h[np.ix_(active, active)]
            eig = np.linalg.eigvalsh(0.5 * (h + h.T))
            summary = critical_point_summary(eig, gnorm)
            summary["parameters"] = "all" if active.all() else "moving"
        except KeyboardInterrupt:
            interrupted = True
    converged = bool(gnorm <= o.min_gnorm or loss <= o.minloss)
    return Result(
        x=x, loss=float(loss), gnorm=float(gnorm), init=p0, ode_x=ode_x,
        ode_loss=float(ode_loss), ode_gnorm=float(ode_gnorm), phases=phases,
        converged=converged, interrupted=interrupted,
        trajectory_times=np.asarray(rec.times, dtype=np.float64),
        trajectory_points=(np.asarray(rec.points, dtype=np.float64) if rec.points
                           else np.zeros((0, nparams))),
        loss_curve_times=np.asarray(rec.c_t), loss_curve_loss=np.asarray(rec.c_l),
        loss_curve_gnorm=np.asarray(rec.c_g), refine_loss=np.asarray(refine_l),
        refine_gnorm=np.asarray(refine_g), hessian_eigenvalues=eig, summary=summary,
        options=o.public(tauinv_given), tauinv=o.tauinv.copy(),
        total_time=time.perf_counter() - start, problem=_describe(problem),
    )


def _describe(problem: Any) -> str:
    text = repr(problem)
    if len(text) > 300 or " object at 0x" in text:
        text = f"{type(problem).__module__}.{type(problem).__qualname__}(nparams={problem.nparams})"
    return text

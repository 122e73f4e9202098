"""symflow.GaussianNet against an independent JAX reference: accuracy, speed, cost growth.

    python benchmarks/gaussian.py                   # about 4 minutes on 2 cores
    python benchmarks/gaussian.py --quick           # smoke run, about a minute (warm cache)
    python benchmarks/gaussian.py --budget 2 --max-call 60 --cache-dir ~/.cache/symflow
    python benchmarks/gaussian.py --skip growth     # sections: selfcheck accuracy headline growth

Problem: the infinite-data teacher-student loss of one-hidden-layer networks,
L(p) = E_{x ~ N(0, I_din)} [sum_o (f_o(x; p) - g_o(x))^2], f the student (flat
parameters p: W1 (k, din), b1 (k) if biased, W2 (dout, k), b2 (dout) if biased),
g a fixed teacher (V (r, din), c, A (dout, r), d).  With h = W1 x + b1 and
u = V x + c the pre-activations (jointly Gaussian, means b1 / c, covariances
W1 W1^T, W1 V^T, V V^T),

    L = sum_o [ W2_o E[s s^T] W2_o^T - 2 W2_o E[s t^T] A_o^T + A_o E[t t^T] A_o^T
                + 2 (b2_o - d_o) (W2_o E[s] - A_o E[t]) + (b2_o - d_o)^2 ],

s = sigma(h), t = psi(u).  The reference (float64 JAX, written here from the
published formulas; symflow is not called) uses

* erf(x/sqrt2), no biases (Saad & Solla 1995, Phys. Rev. E 52, 4225):
  E[g(h_i) g(h_j)] = (2/pi) arcsin(C_ij / sqrt((1 + C_ii)(1 + C_jj))).
* erf(x/sqrt2) with biases (extra accuracy check, not timed): erf(x/sqrt2) =
  2 Phi(x) - 1 and E[Phi(h_1) Phi(h_2)] = Phi2(m_1/sqrt(1+C_11), m_2/sqrt(1+C_22);
  C_12/sqrt((1+C_11)(1+C_22))), E[Phi(h)] = Phi(m/sqrt(1+C)).
* relu with biases: for h_i ~ N(m_i, s_i^2) with correlation rho, a_i = m_i/s_i,
  q = sqrt(1 - rho^2),
  E[relu(h_1) relu(h_2)] = s_1 s_2 [(a_1 a_2 + rho) Phi2(a_1, a_2; rho)
        + a_1 phi(a_2) Phi((a_1 - rho a_2)/q) + a_2 phi(a_1) Phi((a_2 - rho a_1)/q)
        + q phi(a_1) phi((a_2 - rho a_1)/q)],
  the product moment of the truncated bivariate normal (Rosenbaum 1961, J. R. Stat.
  Soc. B 23, 405; m = 0 gives the arc-cosine kernel of Cho & Saul 2009);
  E[relu(h)] = m Phi(m/s) + s phi(m/s), E[relu(h)^2] = (m^2 + s^2) Phi(m/s) + m s phi(m/s).
  Checked at start-up: in mpmath against mpmath quadrature (30 digits), and in
  float64 against ``scipy.integrate.dblquad``.
* Phi2(a, b; rho) = Phi(a) Phi(b) + (1/2pi) int_0^{asin rho} exp(-(a^2 + b^2 -
  2ab sin t)/(2 cos^2 t)) dt (Plackett's identity, Biometrika 1954, with rho = sin t
  as in Drezner & Wesolowsky 1990 and Genz 2004) with a fixed 32-point
  Gauss-Legendre rule, checked at start-up against mpmath (40 digits) and scipy for
  |rho| <= 0.99; every rho the reference meets must lie in that range, else the JAX
  comparison at that point is skipped with a note.  The derivatives are given to JAX
  in closed form (``jax.custom_jvp``: dPhi2/da = phi(a) Phi((b - rho a)/q),
  dPhi2/drho = phi2(a, b; rho)), so gradients and Hessians do not differentiate the
  quadrature rule (exact; and in a trial ~15x faster for case (b) than
  differentiating through the rule).

Sections:

0. selfcheck -- the building blocks above against brute-force integration.
1. accuracy -- at random points (student ``arch.random_params(seed)``, teacher
   ``random_params(seed + 1000)``; biases, which the Glorot init sets to zero, are
   drawn N(0, 1)): symflow's ``loss_gradient_hessian`` against the JAX reference
   (``jax.value_and_grad``, ``jax.hessian``): relative loss difference (flagged
   above 1e-13), gradient and Hessian max |a - b| / max |b| (flagged above 1e-12).
   Arbiters: the loss by the same formulas in mpmath (30 digits; Phi2 by mpmath
   quadrature), and symflow's Hessian against central differences (h = 1e-5) of
   symflow's own gradient (flagged above 1e-6), which tells whose Hessian is wrong
   when the two disagree.  Also p = teacher (L and the gradient must vanish; loss
   errors relative to E[g^2]) and p = teacher + 1e-3 N(0, 1) (nearly parallel
   neurons; relu: |rho| > 0.99, so mpmath and the FD check only).
2. headline -- (a) erf, k = r = 16, din = 100, no biases, one output (P = 1616);
   (b) relu with hidden and output biases, k = r = 8, din = 20 (P = 177): symflow
   ``loss_gradient_hessian(p)`` vs ``jax.jit`` of p -> (loss, grad, hessian) built
   from ``jax.value_and_grad`` and ``jax.hessian`` (teacher arrays passed as
   arguments), compiled ahead of time (``.lower(...).compile()``, reported
   separately), outputs ``block_until_ready``.  Median wall time of repeats after
   one untimed warm-up; ratio jax / symflow.  Loss+gradient alone likewise.
3. cost growth -- erf without biases, symflow loss, loss+grad and loss+grad+Hessian
   vs k in {4, 8, 16, 32, 64} at din = 100 and vs din in {10, 30, 100, 300} at
   k = 16, fitted log-log slopes (least squares over all points); JAX included at a
   point unless its predicted call time (previous point times the size ratio to the
   power 3 for the Hessian, 2 for the gradient) exceeds --max-call seconds.

--quick: one seed, no extra configurations, FD check only for P <= 200, JAX loss+
gradient and JAX growth points not timed (their compilations dominate), k in
{4, 8, 16}, din in {10, 100}, 0.2 s per measurement, and the user's symflow cache
(pass --fresh-cache to measure the cold build).

Threads: symflow's Gaussian kernels are single-threaded C; JAX gets --threads
(default 1) through XLA_FLAGS ("--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1"), and OMP/OPENBLAS/MKL_NUM_THREADS, all set before
numpy and jax are imported.  cpu/wall of the timed repeats is in the CSV.

Build costs are reported apart: symflow's set-up of the first net per activation
set (a cold build: SymPy + C + compilation into a fresh temporary cache, removed at
exit; --cache-dir uses a given cache instead) and the JAX compile time per
function.  If JAX is not installed its columns are skipped with a note, never
faked.  Results: tables on stdout and benchmarks/results/gaussian.csv (git-ignored;
header lines name the versions and a hash of symflow's sources and templates).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LOSS_TOL = 1e-13
DERIV_TOL = 1e-12
GL_NODES = 32
RHO_MAX = 0.99  # range over which the Gauss-Legendre Phi2 is validated (start-up check)
FD_TOL = 1e-6  # symflow Hessian vs central differences (h = 1e-5) of symflow's gradient
NEAR_TEACHER = 1e-3  # "p = teacher + 1e-3 N(0, 1)" accuracy point: nearly parallel neurons

# ----------------------------------------------------------------------------- set-up


def set_thread_env(threads: int) -> None:
    t = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "SYMFLOW_NUM_THREADS"):
        os.environ[var] = t
    xla = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        xla += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        xla += f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = xla.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["JAX_ENABLE_X64"] = "1"


def source_fingerprint(symflow) -> str:
    """sha256 (12 hex) of symflow's Python sources and C templates: which code was measured."""
    import hashlib

    root = Path(symflow.__file__).resolve().parent
    h = hashlib.sha256()
    files = sorted(list(root.rglob("*.py")) + list((root.parent / "templates").glob("*")))
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


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


def table(header, body):
    cols = list(zip(*([header] + body))) if body else [[h] for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for row in body:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


class Timer:
    """Median wall time: one untimed warm-up call, then repeats until `budget` seconds
    are used (at least `min_reps`; 1 only when a call is longer than 10 budget /
    min_reps).  Also cpu/wall and the kernel (system) share of the CPU time: large
    outputs (a P x P Hessian of hundreds of MB) cost page faults and zeroing in the
    kernel, which varies with the machine's memory state."""

    def __init__(self, budget, min_reps=3, max_reps=1000):
        self.budget, self.min_reps, self.max_reps = budget, min_reps, max_reps

    def __call__(self, fn):
        import resource

        import numpy as np

        t0 = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t0
        times, w0 = [], time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        min_reps = self.min_reps if first * self.min_reps <= 10 * self.budget else 1
        while len(times) < self.max_reps:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= min_reps and time.perf_counter() - w0 >= self.budget:
                break
        wall = time.perf_counter() - w0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        user, sys_ = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        return {"median": float(np.median(times)), "min": float(np.min(times)), "first": first,
                "reps": len(times), "cpu_util": (user + sys_) / wall if wall > 0 else float("nan"),
                "sys_frac": sys_ / (user + sys_) if user + sys_ > 0 else float("nan"), "out": out}


# ----------------------------------------------------------------------------- problems


class Case:
    """One teacher-student configuration at one point (all arrays float64 NumPy)."""

    def __init__(self, act, bias, k, r, din, dout, seed, teacher_point=False):
        import numpy as np

        import symflow

        self.act, self.bias, self.k, self.r, self.din, self.dout = act, bias, k, r, din, dout
        self.seed = seed
        self.s_arch = symflow.MLP(din, [(k, act, bias), (dout, "identity", bias)])
        self.t_arch = symflow.MLP(din, [(r, act, bias), (dout, "identity", bias)])
        rng = np.random.default_rng(seed + 7919)
        tp = self.t_arch.random_params(seed=seed + 1000)
        p = self.s_arch.random_params(seed=seed)
        if bias:  # Glorot init gives zero biases: draw them N(0, 1)
            tp = self._randomise_biases(self.t_arch, tp, rng)
            p = self._randomise_biases(self.s_arch, p, rng)
        if teacher_point:
            assert k == r
            p = tp.copy()
            if teacher_point is not True:  # a noise level: nearly (not exactly) parallel neurons
                p = p + teacher_point * np.random.default_rng(seed + 31).normal(size=p.shape)
        self.teacher_params, self.p = tp, p
        (V, c), (A, d) = self.t_arch.unflatten(tp)
        self.V, self.A = np.array(V, dtype=float), np.array(A, dtype=float)
        self.c = np.zeros(r) if c is None else np.array(c, dtype=float)
        self.d = np.zeros(dout) if d is None else np.array(d, dtype=float)
        self.P = self.s_arch.nparams
        self.label = f"{act}{'+b' if bias else ''} k={k} r={r} din={din} dout={dout}"
        self.point = (f"seed {seed}" if not teacher_point else "p = teacher" if teacher_point is True
                      else f"teacher+{teacher_point:g}N")

    @staticmethod
    def _randomise_biases(arch, params, rng):
        import numpy as np

        (W1, b1), (W2, b2) = arch.unflatten(params)
        parts = [np.ravel(W1), rng.normal(size=np.shape(W1)[0]), np.ravel(W2),
                 rng.normal(size=np.shape(W2)[0])]
        return np.concatenate(parts)

    def unpack(self, p, xp):
        """(W1, b1, W2, b2) from a flat vector; slicing only, so that JAX can trace it."""
        k, din, dout = self.k, self.din, self.dout
        o = 0
        W = p[o:o + k * din].reshape(k, din)
        o += k * din
        if self.bias:
            b = p[o:o + k]
            o += k
        else:
            b = xp.zeros(k, dtype=p.dtype)
        W2 = p[o:o + dout * k].reshape(dout, k)
        o += dout * k
        b2 = p[o:o + dout] if self.bias else xp.zeros(dout, dtype=p.dtype)
        return W, b, W2, b2

    def rho_max(self):
        """Largest |rho| handed to the reference's Phi2 at this point."""
        import numpy as np

        if self.act == "erf" and not self.bias:
            return 0.0  # arcsin closed form, no Phi2
        W, b, _, _ = self.unpack(self.p, np)
        U = np.vstack([W, self.V])  # student-student, student-teacher and teacher-teacher pairs
        C = U @ U.T
        if self.act == "erf":
            q = np.sqrt(1 + np.diag(C))
            R = C / np.outer(q, q)  # diagonal included: q/(1+q) < 1 goes through Phi2 too
        else:
            q = np.sqrt(np.diag(C))
            R = C / np.outer(q, q)
            np.fill_diagonal(R, 0.0)  # relu diagonal: E[relu^2], no Phi2
        return float(np.max(np.abs(R)))


# ----------------------------------------------------------------------------- JAX reference


def make_jax_reference(case):
    """Closed-form loss of `case` as a JAX function of the flat student vector."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.scipy.special import ndtr

    x, w = np.polynomial.legendre.leggauss(GL_NODES)
    glx, glw = jnp.asarray(x), jnp.asarray(w)
    inv_2pi = 1.0 / (2.0 * math.pi)

    def npdf(z):
        return jnp.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    @jax.custom_jvp
    def phi2(a, b, rho):
        """Bivariate normal CDF, Plackett/Drezner-Wesolowsky form, fixed GL rule in t."""
        T = jnp.arcsin(rho)[..., None]
        t = 0.5 * T * (glx + 1.0)
        s, c2 = jnp.sin(t), jnp.cos(t) ** 2
        a_, b_ = a[..., None], b[..., None]
        f = jnp.exp(-(a_ * a_ + b_ * b_ - 2.0 * a_ * b_ * s) / (2.0 * c2))
        return ndtr(a) * ndtr(b) + inv_2pi * jnp.sum(0.5 * T * glw * f, axis=-1)

    @phi2.defjvp
    def phi2_jvp(primals, tangents):
        # exact partial derivatives (closed forms, themselves differentiable): only the
        # value goes through the quadrature, derivatives of any order do not
        a, b, rho = primals
        da, db, dr = tangents
        q = jnp.sqrt(1.0 - rho * rho)
        pa = npdf(a) * ndtr((b - rho * a) / q)
        pb = npdf(b) * ndtr((a - rho * b) / q)
        pr = inv_2pi / q * jnp.exp(-(a * a - 2.0 * rho * a * b + b * b) / (2.0 * q * q))
        return phi2(a, b, rho), pa * da + pb * db + pr * dr

    act, bias = case.act, case.bias

    def pair(m1, m2, C, q1, q2, same):
        """E[a(h_i) a(h_j)], (k1, k2) matrix; q = variances, C = covariances."""
        if act == "erf" and not bias:
            return (2.0 / math.pi) * jnp.arcsin(C / jnp.sqrt(jnp.outer(1.0 + q1, 1.0 + q2)))
        if act == "erf":
            z1, z2 = jnp.sqrt(1.0 + q1), jnp.sqrt(1.0 + q2)
            al1, al2 = (m1 / z1)[:, None], (m2 / z2)[None, :]
            rho = C / jnp.outer(z1, z2)
            al1, al2 = jnp.broadcast_to(al1, rho.shape), jnp.broadcast_to(al2, rho.shape)
            return 4.0 * phi2(al1, al2, rho) - 2.0 * ndtr(al1) - 2.0 * ndtr(al2) + 1.0
        # relu
        s1, s2 = jnp.sqrt(q1), jnp.sqrt(q2)
        rho = C / jnp.outer(s1, s2)
        if same:
            eye = jnp.eye(rho.shape[0], dtype=bool)
            rho = jnp.where(eye, 0.0, rho)  # diagonal: E[relu^2] below
        a1 = jnp.broadcast_to((m1 / s1)[:, None], rho.shape)
        a2 = jnp.broadcast_to((m2 / s2)[None, :], rho.shape)
        qq = jnp.sqrt(1.0 - rho * rho)
        E = jnp.outer(s1, s2) * ((a1 * a2 + rho) * phi2(a1, a2, rho)
                                 + a1 * npdf(a2) * ndtr((a1 - rho * a2) / qq)
                                 + a2 * npdf(a1) * ndtr((a2 - rho * a1) / qq)
                                 + qq * npdf(a1) * npdf((a2 - rho * a1) / qq))
        if same:
            al = m1 / s1
            diag = (m1 * m1 + q1) * ndtr(al) + m1 * s1 * npdf(al)
            E = jnp.where(eye, jnp.diag(diag), E)
        return E

    def mean(m, q):
        if act == "erf" and not bias:
            return jnp.zeros_like(m)
        if act == "erf":
            return 2.0 * ndtr(m / jnp.sqrt(1.0 + q)) - 1.0
        s = jnp.sqrt(q)
        return m * ndtr(m / s) + s * npdf(m / s)

    @jax.jit
    def teacher_terms(V, c, A):
        """E[(A psi)_o^2] and A E[psi]: constants of the loss (symflow precomputes them too)."""
        qt = jnp.sum(V * V, axis=1)
        Ett = pair(c, c, V @ V.T, qt, qt, True)
        return jnp.einsum("oj,jl,ol->o", A, Ett, A), A @ mean(c, qt)

    def loss(p, V, c, A, d, tt, At):
        W, b, W2, b2 = case.unpack(p, jnp)
        qs, qt = jnp.sum(W * W, axis=1), jnp.sum(V * V, axis=1)
        Ess = pair(b, b, W @ W.T, qs, qs, True)
        Est = pair(b, c, W @ V.T, qs, qt, False)
        e = b2 - d
        per_out = (jnp.einsum("oi,il,ol->o", W2, Ess, W2) - 2.0 * jnp.einsum("oi,ij,oj->o", W2, Est, A)
                   + tt + 2.0 * e * (W2 @ mean(b, qs) - At) + e * e)
        return jnp.sum(per_out)

    return loss, teacher_terms


class JaxReference:
    """Compiled JAX reference per shape configuration (act, bias, k, r, din, dout).

    The teacher enters as arguments, so one compilation serves every point and
    teacher of a configuration; compile times (``jit(...).lower(...).compile()``)
    are recorded on first use.  ``lgh``: p -> (loss, grad, hessian) from
    ``jax.value_and_grad`` and ``jax.hessian``; ``lg``: ``jax.value_and_grad``."""

    _cache: dict = {}

    def __init__(self, case):
        import jax

        loss, teacher_terms = make_jax_reference(case)
        vg, h = jax.value_and_grad(loss), jax.hessian(loss)

        def lgh(*args):
            L, g = vg(*args)
            return L, g, h(*args)

        self.jitted = {"lgh": jax.jit(lgh), "lg": jax.jit(vg)}
        self.teacher_terms = teacher_terms
        self.compiled, self.compile_s = {}, {}

    @classmethod
    def get(cls, case):
        key = (case.act, case.bias, case.k, case.r, case.din, case.dout)
        if key not in cls._cache:
            cls._cache[key] = cls(case)
        return cls._cache[key]

    def args(self, case):
        import jax.numpy as jnp
        import numpy as np

        V, c, A, d = (jnp.asarray(z) for z in (case.V, case.c, case.A, case.d))
        tt, At = (jnp.asarray(np.asarray(z)) for z in self.teacher_terms(V, c, A))
        return (jnp.asarray(case.p), V, c, A, d, tt, At)

    def fn(self, which, args):
        if which not in self.compiled:
            t0 = time.perf_counter()
            self.compiled[which] = self.jitted[which].lower(*args).compile()
            self.compile_s[which] = time.perf_counter() - t0
        return self.compiled[which]

    def __call__(self, which, case):
        import numpy as np

        args = self.args(case)
        return tuple(np.asarray(z) for z in self.fn(which, args)(*args))


# ----------------------------------------------------------------------------- mpmath arbiter


def mp_loss(case, dps=30):
    """The same closed forms in mpmath (loss only)."""
    import mpmath as mp

    mp.mp.dps = dps
    import numpy as np

    W, b, W2, b2 = case.unpack(case.p, np)
    V, c, A, d = case.V, case.c, case.A, case.d
    S = [[mp.mpf(float(x)) for x in row] for row in W]
    T = [[mp.mpf(float(x)) for x in row] for row in V]
    bs, ct = [mp.mpf(float(x)) for x in b], [mp.mpf(float(x)) for x in c]
    act, bias = case.act, case.bias

    def dot(x, y):
        return mp.fsum(xi * yi for xi, yi in zip(x, y))

    def phi2(a, bb, rho):
        f = lambda t: mp.exp(-(a * a + bb * bb - 2 * a * bb * mp.sin(t)) / (2 * mp.cos(t) ** 2))
        return mp.ncdf(a) * mp.ncdf(bb) + mp.quad(f, [0, mp.asin(rho)]) / (2 * mp.pi)

    def pair(m1, m2, q1, q2, C, same):
        if act == "erf" and not bias:
            return 2 / mp.pi * mp.asin(C / mp.sqrt((1 + q1) * (1 + q2)))
        if act == "erf":
            z1, z2 = mp.sqrt(1 + q1), mp.sqrt(1 + q2)
            a1, a2 = m1 / z1, m2 / z2
            return 4 * phi2(a1, a2, C / (z1 * z2)) - 2 * mp.ncdf(a1) - 2 * mp.ncdf(a2) + 1
        s1, s2 = mp.sqrt(q1), mp.sqrt(q2)
        if same:
            a = m1 / s1
            return (m1 * m1 + q1) * mp.ncdf(a) + m1 * s1 * mp.npdf(a)
        rho = C / (s1 * s2)
        a1, a2 = m1 / s1, m2 / s2
        if abs(1 - rho) < mp.mpf(10) ** (-mp.mp.dps + 5):
            # parallel neurons (rho = 1): h_i = m_i + s_i z, both positive for z > L
            L = max(-a1, -a2)
            Q, f = mp.ncdf(-L), mp.npdf(L)
            return m1 * m2 * Q + (m1 * s2 + m2 * s1) * f + s1 * s2 * (Q + L * f)
        qq = mp.sqrt(1 - rho * rho)
        return s1 * s2 * ((a1 * a2 + rho) * phi2(a1, a2, rho)
                          + a1 * mp.npdf(a2) * mp.ncdf((a1 - rho * a2) / qq)
                          + a2 * mp.npdf(a1) * mp.ncdf((a2 - rho * a1) / qq)
                          + qq * mp.npdf(a1) * mp.npdf((a2 - rho * a1) / qq))

    def mean(m, q):
        if act == "erf" and not bias:
            return mp.mpf(0)
        if act == "erf":
            return 2 * mp.ncdf(m / mp.sqrt(1 + q)) - 1
        s = mp.sqrt(q)
        return m * mp.ncdf(m / s) + s * mp.npdf(m / s)

    def gram(X, mx, Y, my, same):
        qx = [dot(x, x) for x in X]
        qy = [dot(y, y) for y in Y]
        E = [[None] * len(Y) for _ in X]
        for i, x in enumerate(X):
            for j, y in enumerate(Y):
                if same and j < i:
                    E[i][j] = E[j][i]
                    continue
                E[i][j] = pair(mx[i], my[j], qx[i], qy[j], dot(x, y), same and i == j)
        return E, [mean(m, q) for m, q in zip(mx, qx)]

    Ess, mus = gram(S, bs, S, bs, True)
    Est, _ = gram(S, bs, T, ct, False)
    Ett, mut = gram(T, ct, T, ct, True)
    total = mp.mpf(0)
    k, r = len(S), len(T)
    for o in range(case.dout):
        w = [mp.mpf(float(x)) for x in W2[o]]
        a = [mp.mpf(float(x)) for x in A[o]]
        e = mp.mpf(float(b2[o])) - mp.mpf(float(d[o]))
        total += mp.fsum(w[i] * w[l] * Ess[i][l] for i in range(k) for l in range(k))
        total -= 2 * mp.fsum(w[i] * a[j] * Est[i][j] for i in range(k) for j in range(r))
        total += mp.fsum(a[j] * a[l] * Ett[j][l] for j in range(r) for l in range(r))
        total += 2 * e * (mp.fsum(w[i] * mus[i] for i in range(k)) - mp.fsum(a[j] * mut[j] for j in range(r)))
        total += e * e
    return total


# ----------------------------------------------------------------------------- self-checks


def formula_self_checks(quick):
    """Check the formulas the reference uses against brute-force integration."""
    import warnings

    import mpmath as mp
    import numpy as np
    from scipy import integrate
    from scipy.stats import multivariate_normal, norm

    warnings.filterwarnings("ignore", category=integrate.IntegrationWarning)
    SQ2PI = math.sqrt(2.0 * math.pi)

    def pdf(z):  # scalar, fast (scipy.stats' pdf is ~100x slower per call)
        return math.exp(-0.5 * z * z) / SQ2PI

    rows = []
    rng = np.random.default_rng(2024)

    # Phi2: the 32-point GL form vs mpmath (Plackett's identity integrated to 40 digits)
    mp.mp.dps = 40
    x, w = np.polynomial.legendre.leggauss(GL_NODES)

    def phi2_gl(a, b, rho):
        T = math.asin(rho)
        t = 0.5 * T * (x + 1)
        f = np.exp(-(a * a + b * b - 2 * a * b * np.sin(t)) / (2 * np.cos(t) ** 2))
        return norm.cdf(a) * norm.cdf(b) + np.sum(0.5 * T * w * f) / (2 * math.pi)

    def phi2_mp(a, b, rho):
        a, b, rho = mp.mpf(a), mp.mpf(b), mp.mpf(rho)
        f = lambda t: mp.exp(-(a * a - 2 * t * a * b + b * b) / (2 * (1 - t * t))) / (2 * mp.pi * mp.sqrt(1 - t * t))
        return mp.ncdf(a) * mp.ncdf(b) + mp.quad(f, [0, rho])

    n = 12 if quick else 40
    pts = [(rng.normal() * 2, rng.normal() * 2, rng.uniform(-RHO_MAX, RHO_MAX)) for _ in range(n)]
    pts += [(0.3, -0.2, RHO_MAX), (1.0, 1.0, RHO_MAX), (-1.0, -1.0, RHO_MAX), (2.0, -2.0, -RHO_MAX)]
    e_mp = max(abs(phi2_gl(*q) - float(phi2_mp(*q))) for q in pts)
    e_sp = max(abs(phi2_gl(a, b, r) - multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([a, b]))
               for a, b, r in pts)
    rows.append(("Phi2, 32-pt Gauss-Legendre vs mpmath (40 digits)", f"|rho| <= {RHO_MAX}", len(pts), e_mp,
                 "max abs error"))
    rows.append(("Phi2, 32-pt Gauss-Legendre vs scipy multivariate_normal.cdf", f"|rho| <= {RHO_MAX}",
                 len(pts), e_sp, "max abs difference"))

    # relu moments.  (i) The formulas evaluated in mpmath against mpmath quadrature
    # (exactness of the formulas; the pair integral is nested: the inner expectation
    # over z2 given z1 is the one-variable E[relu], itself checked first).
    # (ii) The float64 pair formula against scipy's 2-D adaptive quadrature (independent
    # of everything above, limited by dblquad's tolerance).
    mp.mp.dps = 30

    def relu1_mp(m, s):
        return m * mp.ncdf(m / s) + s * mp.npdf(m / s)

    def relu2_mp(m, s):
        return (m * m + s * s) * mp.ncdf(m / s) + m * s * mp.npdf(m / s)

    def relu_pair_mp(m1, m2, s1, s2, r):
        a1, a2, q = m1 / s1, m2 / s2, mp.sqrt(1 - r * r)
        f = lambda t: mp.exp(-(a1 * a1 + a2 * a2 - 2 * a1 * a2 * mp.sin(t)) / (2 * mp.cos(t) ** 2))
        P2 = mp.ncdf(a1) * mp.ncdf(a2) + mp.quad(f, [0, mp.asin(r)]) / (2 * mp.pi)
        return s1 * s2 * ((a1 * a2 + r) * P2 + a1 * mp.npdf(a2) * mp.ncdf((a1 - r * a2) / q)
                          + a2 * mp.npdf(a1) * mp.ncdf((a2 - r * a1) / q)
                          + q * mp.npdf(a1) * mp.npdf((a2 - r * a1) / q))

    def relu_pair_nested_mp(m1, m2, s1, s2, r):
        # h2 | z1 ~ N(m2 + s2 r z1, (s2 q)^2)
        q = mp.sqrt(1 - r * r)
        g = lambda z1: (m1 + s1 * z1) * relu1_mp(m2 + s2 * r * z1, s2 * q) * mp.npdf(z1)
        z0 = -m1 / s1
        return mp.quad(g, [z0, z0 + 4, mp.inf])

    def relu_pair_f64(m1, m2, s1, s2, r):
        a1, a2, q = m1 / s1, m2 / s2, math.sqrt(1 - r * r)
        return s1 * s2 * ((a1 * a2 + r) * phi2_gl(a1, a2, r) + a1 * pdf(a2) * norm.cdf((a1 - r * a2) / q)
                          + a2 * pdf(a1) * norm.cdf((a2 - r * a1) / q) + q * pdf(a1) * pdf((a2 - r * a1) / q))

    def relu_pair_dblquad(m1, m2, s1, s2, r):
        # h1 = m1 + s1 z1, h2 = m2 + s2 (r z1 + q z2); both positive: z1 > -a1,
        # z2 > (-m2/s2 - r z1)/q; the integrand is smooth there
        q = math.sqrt(1 - r * r)
        f = lambda z2, z1: (m1 + s1 * z1) * (m2 + s2 * (r * z1 + q * z2)) * pdf(z1) * pdf(z2)
        val, _ = integrate.dblquad(f, -m1 / s1, 12.0, lambda z1: (-m2 / s2 - r * z1) / q, lambda z1: 14.0,
                                   epsabs=1e-14, epsrel=1e-13)
        return val

    n = 4 if quick else 10
    e1, ep, ed = [], [], []
    for _ in range(n):
        m, s_ = rng.normal(), rng.uniform(0.3, 2.0)
        mm, ss = mp.mpf(m), mp.mpf(s_)
        q1 = mp.quad(lambda z: (mm + ss * z) * mp.npdf(z), [-mm / ss, -mm / ss + 4, mp.inf])
        q2 = mp.quad(lambda z: (mm + ss * z) ** 2 * mp.npdf(z), [-mm / ss, -mm / ss + 4, mp.inf])
        e1.append(float(max(abs(relu1_mp(mm, ss) - q1) / q1, abs(relu2_mp(mm, ss) - q2) / q2)))
        m1, m2 = rng.normal(size=2)
        s1, s2 = rng.uniform(0.3, 2.0, size=2)
        r = rng.uniform(-0.9, 0.9)
        args_mp = [mp.mpf(float(v)) for v in (m1, m2, s1, s2, r)]
        ref = relu_pair_nested_mp(*args_mp)
        ep.append(float(abs(relu_pair_mp(*args_mp) - ref) / ref))
        qv = relu_pair_dblquad(m1, m2, s1, s2, r)
        ed.append(abs(relu_pair_f64(m1, m2, s1, s2, r) - qv) / abs(qv))
    rows.append(("E[relu(h)], E[relu(h)^2] formulas vs quadrature (both mpmath, 30 digits)",
                 "m~N(0,1), s in [.3,2]", n, max(e1), "max rel difference"))
    rows.append(("E[relu(h1) relu(h2)] formula vs nested quadrature (both mpmath, 30 digits)",
                 "m~N(0,1), s in [.3,2], |rho|<.9", n, max(ep), "max rel difference"))
    rows.append(("E[relu(h1) relu(h2)] formula (float64) vs scipy dblquad (tol 1e-13)",
                 "m~N(0,1), s in [.3,2], |rho|<.9", n, max(ed), "max rel difference"))
    # erf with biases: E[erf(h1/sqrt2) erf(h2/sqrt2)] via Phi2 vs dblquad
    ee = []
    erf, rt2 = math.erf, math.sqrt(2.0)
    for _ in range(max(2, n // 2)):
        m1, m2 = rng.normal(size=2)
        s1, s2 = rng.uniform(0.3, 2.0, size=2)
        r = rng.uniform(-0.9, 0.9)
        q = math.sqrt(1 - r * r)
        f = lambda z2, z1: (erf((m1 + s1 * z1) / rt2) * erf((m2 + s2 * (r * z1 + q * z2)) / rt2)
                            * pdf(z1) * pdf(z2))
        ref = integrate.dblquad(f, -12, 12, -12, 12, epsabs=1e-14, epsrel=1e-13)[0]
        z1, z2 = math.sqrt(1 + s1 * s1), math.sqrt(1 + s2 * s2)
        fv = (4 * phi2_gl(m1 / z1, m2 / z2, r * s1 * s2 / (z1 * z2)) - 2 * norm.cdf(m1 / z1)
              - 2 * norm.cdf(m2 / z2) + 1)
        ee.append(abs(fv - ref) / max(abs(ref), 1e-3))
    rows.append(("E[erf erf] with means (via Phi2) vs scipy dblquad (tol 1e-13)", "m~N(0,1), s in [.3,2], |rho|<.9",
                 len(ee), max(ee), "max rel difference"))
    return rows


# ----------------------------------------------------------------------------- sections


def fd_hessian(net, p, h=1e-5):
    """Central differences of symflow's own gradient (arbiter for Hessian disagreements)."""
    import numpy as np

    P = p.shape[0]
    H = np.empty((P, P))
    for i in range(P):
        e = np.zeros(P)
        e[i] = h
        H[:, i] = (net.gradient(p + e) - net.gradient(p - e)) / (2 * h)
    return H


def accuracy_section(args, jax_ok, notes):
    import numpy as np

    import symflow

    seeds = [0] if args.quick else [0, 1, 2]
    configs = [("erf", False, 16, 16, 100, 1), ("relu", True, 8, 8, 20, 1)]
    extra = [("erf", True, 6, 4, 10, 1), ("relu", True, 5, 3, 7, 2), ("erf", False, 5, 7, 9, 3)]
    cases = [Case(*cfg, seed=s) for cfg in configs for s in seeds]
    if not args.quick:
        cases += [Case(*cfg, seed=seeds[0]) for cfg in extra]
    cases += [Case(*cfg, seed=0, teacher_point=True) for cfg in configs]
    cases += [Case(*cfg, seed=0, teacher_point=NEAR_TEACHER) for cfg in configs]
    rows = []
    for cs in cases:
        net = symflow.GaussianNet(symflow.TeacherNet(cs.t_arch, cs.teacher_params), cs.s_arch)
        Ls, gs, Hs = net.loss_gradient_hessian(cs.p)
        at_teacher = cs.point == "p = teacher"
        teacher_like = cs.point != f"seed {cs.seed}"  # L ~ 0: errors relative to E[g^2]
        row = {"section": "accuracy", "case": cs.label, "point": cs.point, "act": cs.act, "bias": cs.bias,
               "k": cs.k, "r": cs.r, "din": cs.din, "dout": cs.dout, "P": cs.P, "loss_symflow": Ls,
               "grad_maxabs_symflow": float(np.max(np.abs(gs))),
               "hess_asym_symflow": float(np.max(np.abs(Hs - Hs.T)) / np.max(np.abs(Hs)))}
        # E[g^2] (the loss of a student with zero output weights and biases): the loss scale
        zero = cs.p.copy()
        _, _, W2, b2 = cs.unpack(zero, np)
        W2[...] = 0.0
        b2[...] = 0.0
        row["Eg2"] = Eg2 = net.loss(zero)
        if at_teacher:
            row["loss_over_Eg2"] = abs(Ls) / Eg2
        # symflow's Hessian against central differences of its own gradient
        if cs.P <= 200 or (not args.quick and cs.P <= 2000 and cs.point != "seed 1" and cs.point != "seed 2"):
            Hfd = fd_hessian(net, cs.p)
            row["hess_vs_fd"] = float(np.max(np.abs(Hs - Hfd)) / np.max(np.abs(Hfd)))
        rho = cs.rho_max()
        row["rho_max"] = rho
        if jax_ok:
            if rho > RHO_MAX:
                row["note"] = (f"JAX reference not evaluated: |rho| = {rho:.6f} > {RHO_MAX} (validated range of "
                               f"its Phi2)")
            else:
                Lj, gj, Hj = JaxReference.get(cs)("lgh", cs)
                Lj = float(Lj)
                row["loss_jax"] = Lj
                row["loss_abs_diff"] = abs(Ls - Lj)
                # relative to |L|, or to E[g^2] where L is 0 (student = teacher)
                row["loss_rel_diff"] = abs(Ls - Lj) / (Eg2 if teacher_like else abs(Lj))
                row["grad_abs_diff"] = float(np.max(np.abs(gs - gj)))
                row["grad_rel_diff"] = float(np.max(np.abs(gs - gj)) / np.max(np.abs(gj))) if not at_teacher \
                    else float("nan")
                row["hess_rel_diff"] = float(np.max(np.abs(Hs - Hj)) / np.max(np.abs(Hj)))
                iH = np.unravel_index(np.argmax(np.abs(Hs - Hj)), Hs.shape)
                names = cs.s_arch.parameter_names()
                row["hess_worst_entry"] = f"{names[iH[0]]}/{names[iH[1]]}: {Hs[iH]:.12g} vs {Hj[iH]:.12g}"
        # mpmath third opinion (loss only)
        if not args.no_mpmath:
            import mpmath as mp

            t0 = time.perf_counter()
            Lm = mp_loss(cs)
            row["mp_s"] = time.perf_counter() - t0
            row["loss_mp"] = float(Lm)
            den = mp.mpf(Eg2) if teacher_like else abs(Lm)
            row["sf_vs_mp"] = float(abs(mp.mpf(Ls) - Lm) / den)
            if "loss_jax" in row:
                row["jax_vs_mp"] = float(abs(mp.mpf(row["loss_jax"]) - Lm) / den)
        rows.append(row)
        print(f"  accuracy: {cs.label:<30s} {cs.point:<14s} loss {Ls:.6g}  vs jax {fmt_e(row.get('loss_rel_diff'))}"
              f"  vs mp {fmt_e(row.get('sf_vs_mp'))}  grad {fmt_e(row.get('grad_rel_diff'))}  "
              f"hess {fmt_e(row.get('hess_rel_diff'))}  hess~fd {fmt_e(row.get('hess_vs_fd'))}", flush=True)
    return rows


def time_symflow(net, p, timer, hessian=True, loss_only=False):
    if loss_only:
        return timer(lambda: net.loss(p))
    fn = (lambda: net.loss_gradient_hessian(p)) if hessian else (lambda: net.loss_and_gradient(p))
    return timer(fn)


def time_jax(case, timer, which=("lgh", "lg")):
    """Time the compiled JAX reference; returns {which: timer result + 'compile' (s, first use)}."""
    import jax

    ref = JaxReference.get(case)
    args = ref.args(case)
    out = {}
    for name in which:
        fn = ref.fn(name, args)
        res = timer(lambda: jax.block_until_ready(fn(*args)))
        res["compile"] = ref.compile_s[name]
        out[name] = res
    return out


def headline_section(args, jax_ok, notes, timer):
    import numpy as np

    import symflow

    cases = [("a", Case("erf", False, 16, 16, 100, 1, seed=0)), ("b", Case("relu", True, 8, 8, 20, 1, seed=0))]
    rows = []
    for tag, cs in cases:
        teacher = symflow.TeacherNet(cs.t_arch, cs.teacher_params)
        t0 = time.perf_counter()
        net = symflow.GaussianNet(teacher, cs.s_arch)
        setup = time.perf_counter() - t0
        sf = time_symflow(net, cs.p, timer)
        row = {"section": "headline", "case": f"({tag}) {cs.label}", "act": cs.act, "bias": cs.bias, "k": cs.k,
               "r": cs.r, "din": cs.din, "dout": cs.dout, "P": cs.P, "symflow_setup_s": setup,
               "symflow_lgh_s": sf["median"], "symflow_lgh_min_s": sf["min"], "symflow_lgh_reps": sf["reps"],
               "symflow_lgh_cpu_util": sf["cpu_util"], "symflow_lgh_sys_frac": sf["sys_frac"]}
        sfl = time_symflow(net, cs.p, timer, hessian=False)
        row.update({"symflow_lg_s": sfl["median"], "symflow_lg_reps": sfl["reps"]})
        if jax_ok:
            jx = time_jax(cs, timer, which=("lgh",) if args.quick else ("lgh", "lg"))
            for name, r in jx.items():
                row.update({f"jax_{name}_s": r["median"], f"jax_{name}_min_s": r["min"],
                            f"jax_{name}_reps": r["reps"], f"jax_{name}_compile_s": r["compile"],
                            f"jax_{name}_cpu_util": r["cpu_util"], f"jax_{name}_sys_frac": r["sys_frac"]})
            for name in jx:
                row[f"ratio_{name}"] = row[f"jax_{name}_s"] / row[f"symflow_{name}_s"]
            Ls, gs, Hs = sf["out"]
            Lj, gj, Hj = (np.asarray(z) for z in jx["lgh"]["out"])
            row["loss_rel_diff"] = abs(Ls - float(Lj)) / abs(float(Lj))
            row["hess_rel_diff"] = float(np.max(np.abs(Hs - Hj)) / np.max(np.abs(Hj)))
        rows.append(row)
        print(f"  headline ({tag}): symflow {fmt_t(row['symflow_lgh_s'])}  jax {fmt_t(row.get('jax_lgh_s'))}",
              flush=True)
    return rows


def growth_section(args, jax_ok, notes, timer, axis, values):
    import symflow

    rows = []
    prev = {}
    for v in values:
        k, din = (v, 100) if axis == "k" else (16, v)
        cs = Case("erf", False, k, k, din, 1, seed=0)
        net = symflow.GaussianNet(symflow.TeacherNet(cs.t_arch, cs.teacher_params), cs.s_arch)
        row = {"section": f"growth_{axis}", "case": cs.label, "act": "erf", "bias": False, "k": k, "r": k,
               "din": din, "dout": 1, "P": cs.P}
        lo = time_symflow(net, cs.p, timer, loss_only=True)
        row.update({"symflow_l_s": lo["median"], "symflow_l_reps": lo["reps"]})
        lg = time_symflow(net, cs.p, timer, hessian=False)
        row.update({"symflow_lg_s": lg["median"], "symflow_lg_reps": lg["reps"]})
        # predicted symflow Hessian memory: the P x P output
        lgh = time_symflow(net, cs.p, timer)
        row.update({"symflow_lgh_s": lgh["median"], "symflow_lgh_min_s": lgh["min"],
                    "symflow_lgh_reps": lgh["reps"], "symflow_lgh_cpu_util": lgh["cpu_util"],
                    "symflow_lgh_sys_frac": lgh["sys_frac"]})
        del lgh
        if jax_ok:
            todo = []
            for name, expo in (("lgh", 3.0), ("lg", 2.0)) if not args.quick else ():
                if name in prev:
                    x0, t0_ = prev[name]
                    pred = t0_ * (v / x0) ** expo
                    if pred > args.max_call:
                        row[f"jax_{name}_note"] = f"skipped: predicted {pred:.1f} s > --max-call {args.max_call:g} s"
                        notes.append(f"growth {axis}={v}: JAX {name} {row[f'jax_{name}_note']}")
                        continue
                todo.append(name)
            if todo:
                jx = time_jax(cs, timer, which=tuple(todo))
                for name, r in jx.items():
                    row.update({f"jax_{name}_s": r["median"], f"jax_{name}_reps": r["reps"],
                                f"jax_{name}_compile_s": r["compile"], f"jax_{name}_cpu_util": r["cpu_util"],
                                f"jax_{name}_sys_frac": r["sys_frac"]})
                    row[f"ratio_{name}"] = r["median"] / row[f"symflow_{name}_s"]
                    prev[name] = (v, r["median"])
                del jx
        rows.append(row)
        print(f"  growth {axis}={v}: symflow l {fmt_t(row['symflow_l_s'])} lg {fmt_t(row['symflow_lg_s'])} lgh {fmt_t(row['symflow_lgh_s'])}"
              f" | jax lg {fmt_t(row.get('jax_lg_s'))} lgh {fmt_t(row.get('jax_lgh_s'))}", flush=True)
    return rows


def slope(xs, ys):
    import numpy as np

    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and y == y and y > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


# ----------------------------------------------------------------------------- output


def write_csv(rows, header):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "gaussian.csv"
    cols = []
    for r in rows:
        for c in r:
            if c not in cols and c != "out":
                cols.append(c)
    with open(path, "w", newline="") as f:
        for key, val in header.items():
            f.write(f"# {key}: {val}\n")
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path


def print_tables(selfcheck, acc, head, gk, gd, header, notes, build_rows, jax_ok):
    if selfcheck:
        print("\n## Formula self-checks (the reference's building blocks against brute force)")
        table(["check", "range", "points", "error", "measure"],
              [[a, b, c, fmt_e(d), e] for a, b, c, d, e in selfcheck])

    if acc:
        print("\n## Accuracy: symflow vs the JAX reference (float64) and mpmath (30 digits, loss only)")
        print(f"   loss: |L_a - L_b| / |L_b| (flag > {LOSS_TOL:g}), at and near p = teacher / E[g^2] instead; "
              f"grad, Hessian: max|sf - jax| / max|jax| (flag > {DERIV_TOL:g});\n"
              f"   H~FD: symflow Hessian vs central differences (h = 1e-5) of symflow's own gradient, "
              f"max|diff| / max|FD| (flag > {FD_TOL:g}); at p = teacher 'grad' is max|g_sf| (must be 0)")
        body = []
        for r in acc:
            flags = []
            exact_t = r["point"] == "p = teacher"
            if max(r.get("loss_rel_diff", 0), r.get("sf_vs_mp", 0)) > LOSS_TOL:
                flags.append("LOSS")
            if exact_t and r["loss_over_Eg2"] > LOSS_TOL:
                flags.append("L!=0")
            if (r.get("grad_rel_diff", 0) > DERIV_TOL) or (exact_t and r["grad_maxabs_symflow"] > DERIV_TOL):
                flags.append("GRAD")
            if r.get("hess_rel_diff", 0) > DERIV_TOL or r.get("hess_vs_fd", 0) > FD_TOL:
                flags.append("HESS")
            grad = fmt_e(r["grad_maxabs_symflow"]) + " abs" if exact_t else fmt_e(r.get("grad_rel_diff"))
            body.append([r["case"], r["point"], r["P"], f"{r['loss_symflow']:.15g}", fmt_e(r.get("loss_rel_diff")),
                         fmt_e(r.get("sf_vs_mp")), fmt_e(r.get("jax_vs_mp")), grad, fmt_e(r.get("hess_rel_diff")),
                         fmt_e(r.get("hess_vs_fd")), f"{r['rho_max']:.4g}", " ".join(flags) or "ok"])
        table(["case", "point", "P", "loss (symflow)", "sf~jax", "sf~mp", "jax~mp", "grad", "Hessian", "H~FD",
               "max|rho|", "status"], body)
        for r in acc:
            if r.get("note"):
                print(f"   {r['case']} {r['point']}: {r['note']}")
            if r.get("hess_rel_diff", 0) > DERIV_TOL:
                print(f"   {r['case']} {r['point']}: largest Hessian difference at {r['hess_worst_entry']} "
                      f"(symflow vs jax)")

    if build_rows:
        print("\n## symflow set-up of the first GaussianNet per activation set "
              + ("(cold build: SymPy + C + compile, fresh cache)" if header["cache"] == "fresh temporary"
                 else f"(cache {header['cache']})"))
        table(["activations", "set-up"], [[b["case"], fmt_t(b["symflow_setup_s"])] for b in build_rows])
    if head:
        print(f"\n## Headline: loss + gradient + Hessian, one call, {header['threads']} thread(s) "
              f"(median; ratio = jax / symflow; 'H diff' = max|H_sf - H_jax| / max|H_jax| at the timed point)")
        body = []
        for r in head:
            body.append([r["case"], r["P"], fmt_t(r["symflow_lgh_s"]), fmt_t(r.get("jax_lgh_s")),
                         fmt_r(r.get("ratio_lgh")), fmt_t(r["symflow_lg_s"]), fmt_t(r.get("jax_lg_s")),
                         fmt_r(r.get("ratio_lg")), fmt_t(r.get("jax_lgh_compile_s")),
                         fmt_t(r.get("jax_lg_compile_s")), fmt_e(r.get("hess_rel_diff")),
                         f"{r['symflow_lgh_cpu_util']:.2f}/" + (f"{r['jax_lgh_cpu_util']:.2f}"
                                                                if "jax_lgh_cpu_util" in r else "-")])
        table(["case", "P", "sf L+g+H", "jax L+g+H", "jax/sf", "sf L+g", "jax L+g", "jax/sf",
               "jax compile L+g+H", "jax compile L+g", "H diff", "cpu/wall sf/jax"], body)
        for r in head:
            if r.get("hess_rel_diff", 0) > DERIV_TOL:
                print(f"   WARNING {r['case']}: symflow's Hessian disagrees with the reference "
                      f"({r['hess_rel_diff']:.1e}); its time is that of a wrong result")

    for name, rows, axis in (("k (din = 100)", gk, "k"), ("din (k = 16)", gd, "din")):
        if not rows:
            continue
        print(f"\n## Cost growth vs {name}: erf, no biases, r = k, one output; median of one call")
        body = [[r[axis], r["P"], fmt_t(r["symflow_l_s"]), fmt_t(r["symflow_lg_s"]), fmt_t(r["symflow_lgh_s"]),
                 fmt_t(r.get("jax_lg_s")), fmt_t(r.get("jax_lgh_s")), fmt_r(r.get("ratio_lg")),
                 fmt_r(r.get("ratio_lgh")), fmt_t(r.get("jax_lgh_compile_s")),
                 f"{100 * r['symflow_lgh_sys_frac']:.0f}%"] for r in rows]
        xs = [r[axis] for r in rows]
        cols = ("symflow_l_s", "symflow_lg_s", "symflow_lgh_s", "jax_lg_s", "jax_lgh_s")
        sl = {c: slope(xs, [r.get(c) for r in rows]) for c in cols}
        body.append(["slope", "", *(f"{sl[c]:.2f}" if sl[c] == sl[c] else "-" for c in cols), "", "", "", ""])
        table([axis, "P", "sf L", "sf L+g", "sf L+g+H", "jax L+g", "jax L+g+H", "jax/sf L+g", "jax/sf L+g+H",
               "jax compile L+g+H", "sf L+g+H sys"], body)
        for c in sl:
            for r in rows:
                r.setdefault(f"slope_{c[:-2]}", sl[c])
        print("   slope = least-squares log-log exponent over the points shown "
              "(Hessian output alone is P^2 = (k din)^2 numbers);\n"
              "   sf L+g+H sys = kernel share of symflow's CPU time (page faults / zeroing of the fresh P x P "
              "output; varies with the machine's memory state)")
    if notes:
        print("\nnotes:")
        for n in dict.fromkeys(notes):
            print(f"  - {n}")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: one seed, short sweeps, short budgets")
    ap.add_argument("--threads", type=int, default=1, help="threads for JAX/BLAS (default 1)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of repeats per measurement (default 1, --quick 0.2)")
    ap.add_argument("--max-call", type=float, default=None,
                    help="skip a JAX growth point whose predicted call time exceeds this (default 10 s, quick 2 s)")
    ap.add_argument("--ks", type=int, nargs="+", help="k sweep at din = 100 (default 4 8 16 32 64)")
    ap.add_argument("--dins", type=int, nargs="+", help="din sweep at k = 16 (default 10 30 100 300)")
    ap.add_argument("--cache-dir", help="SYMFLOW_CACHE_DIR for this run (default: a fresh temporary cache, "
                                        "so the cold build is measured; with --quick the user's cache)")
    ap.add_argument("--fresh-cache", action="store_true", help="with --quick: measure the cold build too")
    ap.add_argument("--no-jax", action="store_true", help="skip JAX (as if it were not installed)")
    ap.add_argument("--no-mpmath", action="store_true", help="skip the mpmath third opinion")
    ap.add_argument("--skip", nargs="+", default=[], choices=["selfcheck", "accuracy", "headline", "growth"])
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = 0.2 if args.quick else 1.0
    if args.max_call is None:
        args.max_call = 2.0 if args.quick else 10.0
    if args.ks is None:
        args.ks = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64]
    if args.dins is None:
        args.dins = [10, 100] if args.quick else [10, 30, 100, 300]

    if any(m in sys.modules for m in ("numpy", "jax")):
        print("warning: numpy/jax were imported before the thread settings; thread limits may not apply",
              flush=True)
    set_thread_env(args.threads)
    if args.cache_dir:
        os.environ["SYMFLOW_CACHE_DIR"] = str(Path(args.cache_dir).expanduser().resolve())
        cache_label = os.environ["SYMFLOW_CACHE_DIR"]
    elif args.quick and not args.fresh_cache:
        cache_label = "user's (" + os.environ.get("SYMFLOW_CACHE_DIR", "default") + ")"
    else:
        cache = tempfile.mkdtemp(prefix="symflow-bench-gaussian-")
        os.environ["SYMFLOW_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, True)  # a cold build is measured; leave nothing behind
        cache_label = "fresh temporary"

    t_start = time.perf_counter()
    import numpy as np

    import symflow

    notes = []
    jax_ok, jax_version = False, "not installed"
    if args.no_jax:
        notes.append("JAX skipped (--no-jax): no JAX columns")
        jax_version = "skipped"
    else:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)
            jax_ok, jax_version = True, jax.__version__
        except ImportError:
            notes.append("JAX not installed: reference comparison and JAX timings skipped")
    import importlib.util

    if importlib.util.find_spec("mpmath") is None:  # a SymPy dependency, so normally present
        args.no_mpmath = True
        args.skip.append("selfcheck")
        notes.append("mpmath not installed: no 30-digit loss check, no formula self-checks")

    header = {"symflow": getattr(symflow, "__version__", "?"), "symflow_source": source_fingerprint(symflow),
              "jax": jax_version, "numpy": np.__version__,
              "python": platform.python_version(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "threads": args.threads, "budget_s": args.budget,
              "max_call_s": args.max_call, "quick": args.quick, "cache": cache_label,
              "xla_flags": os.environ.get("XLA_FLAGS", "")}
    print(f"symflow {header['symflow']} (sources {header['symflow_source']})  jax {jax_version}  numpy {np.__version__}  python {header['python']}  "
          f"{header['cpus']} cpus  threads {args.threads}  budget {args.budget:g} s/measurement", flush=True)

    timer = Timer(args.budget)
    rows, selfcheck, acc, head, gk, gd, build_rows = [], [], [], [], [], [], []

    # the first GaussianNet per activation set builds (cold, in a fresh cache): measure it first
    for act, bias in (("erf", False), ("relu", True)):
        cs = Case(act, bias, 16 if act == "erf" else 8, 16 if act == "erf" else 8, 100 if act == "erf" else 20,
                  1, seed=0)
        t0 = time.perf_counter()
        symflow.GaussianNet(symflow.TeacherNet(cs.t_arch, cs.teacher_params), cs.s_arch)
        build_rows.append({"section": "build", "case": f"{act}{'+b' if bias else ''}",
                           "symflow_setup_s": time.perf_counter() - t0, "cache": cache_label})
        print(f"  symflow build {build_rows[-1]['case']}: {build_rows[-1]['symflow_setup_s']:.2f} s", flush=True)
    rows += build_rows

    if "selfcheck" not in args.skip:
        t0 = time.perf_counter()
        selfcheck = formula_self_checks(args.quick)
        for a, b, c, d, e in selfcheck:
            rows.append({"section": "selfcheck", "case": a, "point": b, "npoints": c, "error": d, "measure": e})
        print(f"  formula self-checks: {time.perf_counter() - t0:.1f} s", flush=True)
        write_csv(rows, header)
    if "accuracy" not in args.skip:
        acc = accuracy_section(args, jax_ok, notes)
        rows += acc
        write_csv(rows, header)
    if "headline" not in args.skip:
        if args.quick and jax_ok:
            notes.append("--quick: JAX loss+gradient not timed in the headline (saves its compilation)")
        head = headline_section(args, jax_ok, notes, timer)
        rows += head
        write_csv(rows, header)
    if "growth" not in args.skip:
        if args.quick and jax_ok:
            notes.append("--quick: JAX not timed in the growth sweeps (saves its compilations)")
        gk = growth_section(args, jax_ok, notes, timer, "k", args.ks)
        gd = growth_section(args, jax_ok, notes, timer, "din", args.dins)
        rows += gk + gd

    print_tables(selfcheck, acc, head, gk, gd, header, notes, build_rows, jax_ok)
    path = write_csv(rows, header)
    print(f"\nresults: {path}  (total {time.perf_counter() - t_start:.0f} s; on a shared machine wall times are "
          f"noisy, cpu/wall per measurement is in the CSV)")
    bad = [r for r in acc if r["point"] != "p = teacher" and (r.get("loss_rel_diff", 0) > LOSS_TOL
                                                                or r.get("hess_rel_diff", 0) > DERIV_TOL
                                                                or r.get("grad_rel_diff", 0) > DERIV_TOL)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

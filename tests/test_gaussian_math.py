"""Accuracy of templates/gaussian_math.h against independent mpmath references.

The header is compiled on its own (through ``symflow.build.compile_extension``) with
thin non-static wrappers, and compared with references evaluated by mpmath at 40 digits:

- Phi, phi, Phi(p/q): ``mpmath.ncdf`` / ``mpmath.npdf`` of the exact arguments;
- the bivariate normal Phi2(a, b; rho): the Drezner-Wesolowsky angle form (Genz 2004,
  Statistics and Computing 14, eq. (3)) -- not the conditional integral of the header's
  general method (the header uses the angle form only as a fixed-rule double-precision
  fast path) -- anchored where every term is positive,

      rho > 0:  Phi2 = Phi(a) Phi(b)            + 1/(2 pi) int_0^{asin rho}     e^{-g(t)} dt,
      rho < 0:  Phi2 = max(0, Phi(a) - Phi(-b)) + 1/(2 pi) int_{-pi/2}^{asin rho} e^{-g(t)} dt,
      g(t) = (a^2 - 2 a b sin t + b^2) / (2 cos^2 t) = A/(1 + sin t) + B/(1 - sin t),

  integrated by 24-point Gauss-Legendre on panels split at the peak of e^{-g} and at the
  near-singular ends t = -+pi/2, bisected until e^{-g} varies by at most e^40 per panel
  and graded towards the ends; the integrand is scaled by its maximum so that the error is
  relative even for values like 1e-250.  (Checked while developing this test: it agrees
  to 1e-20 with the same construction at 6 times finer panels, which in turn agrees to
  1e-33 with mpmath.quad (tanh-sinh, many sub-intervals) of the conditional integral
  int_{-inf}^a phi(x) Phi((b - rho x)/sqrt(1 - rho^2)) dx over the grid below.)

Tolerances: relative 1e-13 where the reference is >= 1e-250 and absolute 2e-16
everywhere (the absolute bound is a couple of ulp of values near 1).  The only relaxation
is for Phi in the subnormal range (x < -37.5), where a relative 1e-15 is not
representable: there the bound is one subnormal ulp, 2^-1074.
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import pytest

from symflow.build import _import_extension, compile_extension

mpmath = pytest.importorskip("mpmath")

HEADER = Path(__file__).resolve().parents[1] / "templates" / "gaussian_math.h"

CDEF = """
double sf_Phi_w(double x);
double sf_phi_w(double x);
double sf_Phi_ratio_w(double p, double q);
double sf_bvn_w(double a, double b, double rho);
double sf_bvn_upper_w(double a, double b, double rho);
"""

WRAPPERS = r"""
double sf_Phi_w(double x) { return sf_Phi(x); }
double sf_phi_w(double x) { return sf_phi(x); }
double sf_Phi_ratio_w(double p, double q) { return sf_Phi_ratio(p, q); }
double sf_bvn_w(double a, double b, double rho) { return sf_bvn(a, b, rho); }
double sf_bvn_upper_w(double a, double b, double rho) { return sf_bvn_upper(a, b, rho); }
"""

REL = 1e-13          # relative tolerance where the true value is >= TINY
ABS = 2e-16          # absolute tolerance everywhere
TINY = 1e-250
DBL_MIN = 2.2250738585072014e-308
DENORM_MIN = 5e-324
INF = math.inf
NAN = math.nan

GRID_AB = (-38.0, -12.0, -8.0, -3.0, -1.0, -1e-3, 0.0, 0.5, 2.0, 6.0, 9.0, INF, -INF)
GRID_RHO = (-1.0, -1.0 + 1e-15, -0.999999, -0.95, -0.7, -0.3, 0.0, 1e-9, 0.2, 0.6, 0.9,
            0.925, 0.99, 0.999999, 1.0 - 1e-15, 1.0)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The header compiled into a tiny cffi extension with non-static wrappers."""
    outdir = tmp_path_factory.mktemp("gaussian_math")
    name = "_sf_test_gaussian_math"
    source = f'#include <math.h>\n#include "{HEADER}"\n{WRAPPERS}'
    so = compile_extension(name, source, outdir, cdef_text=CDEF)
    return _import_extension(name, so).lib


# ---------------------------------------------------------------------------------------
# mpmath references (40 digits)
# ---------------------------------------------------------------------------------------
DPS = 40


@functools.lru_cache(maxsize=None)
def _gauss_legendre(n):
    """Nodes (positive half) and weights of the n-point Gauss-Legendre rule, n even."""
    mp = mpmath.mp
    xs, ws = [], []
    for i in range(1, n // 2 + 1):
        x = mpmath.cos(mp.pi * (i - mpmath.mpf(1) / 4) / (n + mpmath.mpf(1) / 2))
        for _ in range(100):
            p0, p1 = mpmath.mpf(1), x
            for j in range(2, n + 1):
                p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
            dp = n * (x * p1 - p0) / (x * x - 1)
            dx = p1 / dp
            x -= dx
            if abs(dx) < mpmath.mpf(10) ** (-DPS - 2):
                break
        p0, p1 = mpmath.mpf(1), x
        for j in range(2, n + 1):
            p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
        dp = n * (x * p1 - p0) / (x * x - 1)
        xs.append(x)
        ws.append(2 / ((1 - x * x) * dp * dp))
    return xs, ws


def phi2_ref(a, b, rho):
    """Phi2(a, b; rho) at 40 digits, or None when it is certainly below 1e-300."""
    with mpmath.workdps(DPS):
        mp = mpmath.mp
        a, b, rho = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(rho)
        ncdf = mpmath.ncdf
        if a == -mpmath.inf or b == -mpmath.inf:
            return mpmath.mpf(0)
        if a == mpmath.inf:
            return ncdf(b)
        if b == mpmath.inf:
            return ncdf(a)
        if rho == 1:
            return ncdf(min(a, b))
        if rho == -1:
            return max(mpmath.mpf(0), ncdf(a) - ncdf(-b))
        if rho == 0:
            return ncdf(a) * ncdf(b)
        if min(ncdf(a), ncdf(b)) < mpmath.mpf(10) ** -300:
            return None
        A, B = (a + b) ** 2 / 4, (a - b) ** 2 / 4
        half = mp.pi / 2

        def g(t):
            s = mpmath.sin(t)
            if (A and s == -1) or (B and s == 1):
                return mpmath.inf
            return (A / (1 + s) if A else 0) + (B / (1 - s) if B else 0)

        if rho > 0:
            base, t0 = ncdf(a) * ncdf(b), mpmath.mpf(0)
        else:
            base, t0 = max(mpmath.mpf(0), ncdf(a) - ncdf(-b)), -half
        t1 = mpmath.asin(rho)
        points = {t0, t1}
        inside = lambda t: t0 < t < t1  # noqa: E731
        peak = None
        if A + B > 0:  # maximum of e^{-g}: sin t* = (sqrt A - sqrt B)/(sqrt A + sqrt B)
            ss = (mpmath.sqrt(A) - mpmath.sqrt(B)) / (mpmath.sqrt(A) + mpmath.sqrt(B))
            peak = mpmath.asin(ss)
            curv = (2 * A / (1 + ss) ** 3 + 2 * B / (1 - ss) ** 3) * (1 - ss * ss) \
                if abs(ss) < 1 else mpmath.inf
            width = 1 / mpmath.sqrt(curv) if 0 < curv < mpmath.inf else mpmath.mpf(1)
            for m in (0, 3):
                for sg in (-1, 1):
                    if inside(peak + sg * m * width):
                        points.add(peak + sg * m * width)
        for c, sgn in ((A, -1), (B, 1)):  # transitions of e^{-c/(1 -+ sin t)} near -+pi/2
            if c > 0:
                for m in (mpmath.mpf("0.3"), 1, 3):
                    p = sgn * (half - m * mpmath.sqrt(2 * c))
                    if inside(p):
                        points.add(p)
        points = sorted(points)
        gvals = [g(p) for p in points]
        gmin = min(gvals)
        if peak is not None and t0 <= peak <= t1:
            gmin = min(gmin, g(peak))
        if base == 0 and gmin > 700:
            return None  # the integral is below (pi/2)/(2 pi) e^-700 < 1e-304
        panels, stack = [], list(zip(points[:-1], points[1:], gvals[:-1], gvals[1:]))
        while stack:  # e^{-g} is monotone on every panel (the peak is a break point)
            u, v, gu, gv = stack.pop()
            if min(gu, gv) - gmin > 60 + mpmath.log(1 + (v - u)):
                continue  # below e^-60 of the maximum everywhere on the panel
            graded = (A == 0 or v - u <= u + half) and (B == 0 or v - u <= half - v)
            if (abs(gu - gv) <= 40 and graded) or v - u < mpmath.mpf(10) ** -30:
                panels.append((u, v))
                continue
            m = (u + v) / 2
            gm = g(m)
            stack += [(u, m, gu, gm), (m, v, gm, gv)]
        xs, ws = _gauss_legendre(24)
        total = mpmath.mpf(0)
        for u, v in panels:
            c, hl = (u + v) / 2, (v - u) / 2
            total += hl * mpmath.fsum(w * (mpmath.exp(gmin - g(c - hl * x))
                                           + mpmath.exp(gmin - g(c + hl * x)))
                                      for x, w in zip(xs, ws))
        return base + total * mpmath.exp(-gmin) / (2 * mp.pi)


def _check(got, ref, what):
    """'' if got matches ref (relative REL above TINY, absolute ABS), else a message."""
    if ref is None:  # true value below 1e-300: only the absolute bound and the range
        return "" if 0.0 <= got <= 1e-290 else f"{what}: got {got!r}, want < 1e-300"
    if got != got or not 0.0 <= got <= 1.0:
        return f"{what}: got {got!r}, want {mpmath.nstr(ref, 17)}"
    err = abs(mpmath.mpf(got) - ref)
    if err > ABS:
        return f"{what}: got {got!r}, want {mpmath.nstr(ref, 17)}, abs err {float(err):.3g}"
    if ref >= TINY and err > REL * ref:
        return (f"{what}: got {got!r}, want {mpmath.nstr(ref, 17)}, "
                f"rel err {float(err / ref):.3g}")
    return ""


# ---------------------------------------------------------------------------------------
# univariate
# ---------------------------------------------------------------------------------------
def test_Phi_both_tails(lib):
    xs = [-38 + 47 * i / 940 for i in range(941)]
    xs += [-37.5, -37.0, -30.0, -26.5, -1e-300, -0.0, 0.0, 5e-324, 1e-8, 8.3, 9.0]
    bad = []
    for x in xs:
        got = lib.sf_Phi_w(x)
        with mpmath.workdps(DPS):
            ref = mpmath.ncdf(mpmath.mpf(x))
        # relative 1e-15; in the subnormal range one subnormal ulp (see the module doc)
        tol = max(1e-15 * ref, 2.0**-1074) if ref < DBL_MIN else 1e-15 * ref
        if not abs(mpmath.mpf(got) - ref) <= tol:
            bad.append(f"Phi({x!r}) = {got!r}, want {mpmath.nstr(ref, 17)}")
    assert not bad, "\n".join(bad[:20])
    assert lib.sf_Phi_w(INF) == 1.0 and lib.sf_Phi_w(-INF) == 0.0
    assert lib.sf_Phi_w(40.0) == 1.0 and lib.sf_Phi_w(-40.0) == 0.0
    assert math.isnan(lib.sf_Phi_w(NAN))


def test_phi_density(lib):
    for x in [-37 + 74 * i / 500 for i in range(501)] + [0.0, 1e-300]:
        got = lib.sf_phi_w(x)
        with mpmath.workdps(DPS):
            ref = mpmath.npdf(mpmath.mpf(x))
        assert abs(mpmath.mpf(got) - ref) <= 1e-15 * ref, (x, got)
    assert lib.sf_phi_w(INF) == 0.0 and lib.sf_phi_w(-INF) == 0.0
    assert math.isnan(lib.sf_phi_w(NAN))


def test_Phi_ratio(lib):
    f = lib.sf_Phi_ratio_w
    # the limits of a standard deviation q = 0
    assert f(1.0, 0.0) == 1.0 and f(1e-300, 0.0) == 1.0 and f(INF, 0.0) == 1.0
    assert f(-1.0, 0.0) == 0.0 and f(-5e-324, 0.0) == 0.0 and f(-INF, 0.0) == 0.0
    assert f(0.0, 0.0) == 0.5 and f(-0.0, 0.0) == 0.5
    assert math.isnan(f(NAN, 0.0)) and math.isnan(f(1.0, NAN))
    assert f(0.0, 1e-300) == 0.5 and f(3.0, INF) == 0.5
    # tiny q: the quotient runs off to +-inf
    assert f(1e-10, 5e-324) == 1.0 and f(-1e-10, 5e-324) == 0.0
    # q > 0: Phi of the exact quotient, whose rounding would cost ~x^2 eps in the tail
    rng = random.Random(20240601)
    bad = []
    for _ in range(400):
        q = 10.0 ** rng.uniform(-6, 6)
        p = rng.uniform(-37.5, 9.0) * q
        got = f(p, q)
        with mpmath.workdps(DPS):
            ref = mpmath.ncdf(mpmath.mpf(p) / mpmath.mpf(q))
        if ref >= DBL_MIN and not abs(mpmath.mpf(got) - ref) <= 1e-15 * ref:
            bad.append((p, q, got, mpmath.nstr(ref, 17)))
    assert not bad, bad[:10]
    assert f(-3.0, 1.0) == lib.sf_Phi_w(-3.0)


# ---------------------------------------------------------------------------------------
# bivariate
# ---------------------------------------------------------------------------------------
def test_bvn_grid(lib):
    """The full grid a, b in GRID_AB x rho in GRID_RHO, both argument orders."""
    bad = []
    for i, a in enumerate(GRID_AB):
        for b in GRID_AB[i:]:
            for rho in GRID_RHO:
                ref = phi2_ref(a, b, rho)
                for x, y in ((a, b), (b, a)):
                    msg = _check(lib.sf_bvn_w(x, y, rho), ref, f"Phi2({x!r}, {y!r}; {rho!r})")
                    if msg:
                        bad.append(msg)
    assert not bad, f"{len(bad)} failures:\n" + "\n".join(bad[:30])


def _random_cases(n, seed):
    """Tails, rho within 2^-53 of +-1, nearly equal or opposite thresholds, tiny rho."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        kind = i % 6
        if kind == 0:    # anywhere
            a, b, r = rng.uniform(-10, 9), rng.uniform(-10, 9), rng.uniform(-1, 1)
        elif kind == 1:  # far lower tails
            a, b, r = rng.uniform(-37, -5), rng.uniform(-37, 3), rng.uniform(-1, 1)
        elif kind == 2:  # |rho| -> 1, thresholds equal, nearly equal or nearly opposite
            r = (1 - 2.0 ** -rng.randint(12, 53)) * rng.choice((-1, 1))
            a = rng.uniform(-30, 9)
            step = rng.choice((-1, 1)) * 10 ** rng.uniform(-15, 0)
            b = rng.choice((a, rng.uniform(-30, 9), a + step, -a + step))
        elif kind == 3:  # rho -> 0
            a, b = rng.uniform(-20, 9), rng.uniform(-20, 9)
            r = rng.choice((-1, 1)) * 10 ** rng.uniform(-320, -1)
        elif kind == 4:  # near 1 and near 0: absolute accuracy
            a, b, r = rng.uniform(0, 9), rng.uniform(-1e-3, 9), rng.uniform(-1, 1)
        else:            # typical of the conditional law
            r = rng.uniform(-1, 1)
            a = rng.uniform(-30, 5)
            b = r * a + math.sqrt((1 - r) * (1 + r)) * rng.uniform(-8, 8)
        cases.append((a, b, r))
    return cases


def test_bvn_random(lib):
    bad = []
    for a, b, rho in _random_cases(180, seed=7):
        msg = _check(lib.sf_bvn_w(a, b, rho), phi2_ref(a, b, rho),
                     f"Phi2({a!r}, {b!r}; {rho!r})")
        if msg:
            bad.append(msg)
    assert not bad, f"{len(bad)} failures:\n" + "\n".join(bad[:30])


def test_bvn_extreme_correlations(lib):
    """1 - |rho| = 2^-53 (the closest to 1 below it) and rho ~ 1e-300, subnormal."""
    bad = []
    for rho in (1 - 2.0**-53, -(1 - 2.0**-53), 1 - 2.0**-52, 1e-300, -5e-324):
        for a, b in ((-8.0, -8.0), (-8.0, -8.0 + 1e-14), (0.0, 0.0), (2.0, -2.0),
                     (-1.0, 1.0 + 1e-15), (-20.0, -19.0), (6.0, 6.0), (0.5, -1e-3)):
            msg = _check(lib.sf_bvn_w(a, b, rho), phi2_ref(a, b, rho),
                         f"Phi2({a!r}, {b!r}; {rho!r})")
            if msg:
                bad.append(msg)
    assert not bad, "\n".join(bad)


def test_bvn_symmetry_and_upper(lib):
    rng = random.Random(3)
    for a, b, rho in _random_cases(600, seed=11) + [(2.0, -2.0, -0.5), (-3.0, 3.0, 0.97)]:
        v = lib.sf_bvn_w(a, b, rho)
        assert lib.sf_bvn_w(b, a, rho) == v, (a, b, rho)  # exact, by construction
        assert lib.sf_bvn_upper_w(-a, -b, rho) == v, (a, b, rho)
        assert 0.0 <= v <= min(lib.sf_Phi_w(a), lib.sf_Phi_w(b)) * (1 + REL) + ABS, (a, b, rho)
    # P(X > a, Y > b) in a far upper tail, relative
    for _ in range(10):
        a, b, rho = rng.uniform(5, 30), rng.uniform(5, 30), rng.uniform(-0.9, 0.99)
        ref = phi2_ref(-a, -b, rho)
        assert _check(lib.sf_bvn_upper_w(a, b, rho), ref, "upper") == ""


def test_bvn_exact_limits(lib):
    f = lib.sf_bvn_w
    Phi = lib.sf_Phi_w
    for a in GRID_AB:
        for b in GRID_AB:
            assert f(a, b, 1.0) == Phi(min(a, b))
            assert f(a, b, 1.0 + 2.0**-52) == f(a, b, 1.0)      # a correlation rounded past 1
            assert f(a, b, -1.0 - 2.0**-52) == f(a, b, -1.0)
            for rho in (1.0, -1.0, 0.0):
                assert _check(f(a, b, rho), phi2_ref(a, b, rho), f"({a}, {b}, {rho})") == ""
    # rho = -1: P(-b < X <= a), zero when the interval is empty, relative when it is thin
    assert f(-1.0, 1.0, -1.0) == 0.0 and f(3.0, -3.0, -1.0) == 0.0
    for a, b in ((1e-9, 1e-9), (-8.0, 8.0 + 1e-12), (10.0, -9.999), (0.3, 0.2)):
        ref = phi2_ref(a, b, -1.0)
        assert _check(f(a, b, -1.0), ref, f"({a}, {b}, -1)") == ""
        assert abs(f(a, b, -1.0) - ref) <= 1e-14 * ref
    # infinities and NaN
    assert f(INF, INF, 0.3) == 1.0 and f(-INF, INF, 0.3) == 0.0 and f(INF, -2.0, -0.4) == Phi(-2.0)
    for args in ((NAN, 0.0, 0.5), (0.0, NAN, 0.5), (0.0, 0.0, NAN)):
        assert math.isnan(f(*args))

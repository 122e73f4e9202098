"""Pair expectations of activations under Gaussian pre-activations, and their derivatives.

For pre-activations (h1, h2) ~ N((m1, m2), [[s11, s12], [s12, s22]]) every pair of
activations (f, g) has an expectation E[f(h1) g(h2)] that is a function of the five
moments; a one-hidden-layer teacher-student loss is a weighted sum of such pair
expectations, of E[f(h)^2] and of E[f(h)] (see :mod:`symflow.problems_gaussian`).

Activations of the closed-form family (:mod:`.engine`) get their expectation as a
SymPy expression; SymPy then differentiates it to all first and second partial
derivatives, which are emitted to C.  Every other smooth activation is integrated
numerically in C; there the derivatives come from Price's theorem,

    dE/dm_a = E[d_a F],  dE/dS_aa = E[d_a^2 F] / 2,  dE/dS_12 = E[d_1 d_2 F],

so only the activations' own derivatives up to order four are needed (SymPy).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from ..activations import SELU_ALPHA, SELU_LAMBDA, expression, symbol
from .functions import BivariateNormalCDF, PhiRatio
from .families import is_closed, is_smooth  # noqa: F401  (re-exported)
from .engine import Factor, Term, det_symbol, expect, h_symbols, params, with_det

__all__ = ["closed_terms", "is_closed", "is_smooth", "pair_expression", "mean_expression",
           "diag_expression", "derivatives2", "derivatives1", "PAIR_OUTPUTS", "ONE_OUTPUTS",
           "strip_width", "activation_derivatives", "degenerate_limit", "total_diff"]

#: Order of the 21 outputs of a pair function: value, 5 first, 15 second derivatives.
PAIR_VARS = ("m1", "m2", "s11", "s12", "s22")
PAIR_OUTPUTS = ("E",) + PAIR_VARS + tuple(
    f"{a}{b}" for i, a in enumerate(PAIR_VARS) for b in PAIR_VARS[i:])
#: Order of the 6 outputs of a one-variable function E(m, s).
ONE_OUTPUTS = ("E", "m", "s", "mm", "ms", "ss")

_PHI = Factor("Phi", 1)
_STEP = Factor("Phi", 0)
_STEP_NEG = Factor("Phi", 0, -1)


def _named_terms(name: str, h):
    if name == "identity":
        return [Term(1, h)]
    if name == "square":
        return [Term(sp.Rational(1, 2), h**2)]
    if name == "cube":
        return [Term(1, h**3)]
    if name == "exp":
        return [Term(1, 1, 1)]
    if name == "erf":  # erf(x/sqrt 2) = 2 Phi(x) - 1
        return [Term(2, 1, 0, _PHI), Term(-1, 1)]
    if name == "normal_cdf":
        return [Term(1, 1, 0, _PHI)]
    if name == "gelu":
        return [Term(1, h, 0, _PHI)]
    if name == "relu":
        return [Term(1, h, 0, _STEP)]
    if name == "step":
        return [Term(1, 1, 0, _STEP)]
    if name == "sign":
        return [Term(2, 1, 0, _STEP), Term(-1, 1)]
    if name == "selu":  # lambda (x step(x) + alpha (e^x - 1) step(-x))
        lam, alpha = sp.Float(SELU_LAMBDA, 34), sp.Float(SELU_ALPHA, 34)
        return [Term(lam, h, 0, _STEP), Term(lam * alpha, 1, 1, _STEP_NEG),
                Term(-lam * alpha, 1, 0, _STEP_NEG)]
    return None


@lru_cache(maxsize=256)
def closed_terms(act) -> tuple[Term, ...] | None:
    """The activation as a sum of closed-form terms in ``h1``, or None (quadrature)."""
    h = h_symbols()[0]
    if isinstance(act, str):
        terms = _named_terms(act, h)
        return None if terms is None else tuple(terms)
    expr = expression(act)
    x = symbol()
    if expr.is_polynomial(x):
        return (Term(1, sp.expand(expr.subs(x, h))),)
    return None


#: Half-width (in units of the pre-activation) of the strip around the real axis in
#: which the activation is analytic: the nearest complex singularity.  softplus,
#: sigmoid and silu have poles at i pi (2n+1), tanh at i pi (n + 1/2), g's sigmoid(4x)
#: at i pi (2n+1)/4.  Entire functions (polynomials, erf, normal_cdf, gelu, exp) grow
#: off the axis, so they also get a finite width.  User expressions get a
#: conservative 1/2 (documented; accuracy for them is reported by the error estimate).
_STRIP = {"softplus": 3.141592653589793, "sigmoid": 3.141592653589793,
          "silu": 3.141592653589793, "tanh": 1.5707963267948966, "g": 0.7853981633974483}
_ENTIRE_STRIP = 2.0
_USER_STRIP = 0.5


def strip_width(act) -> float:
    if isinstance(act, str):
        return _STRIP.get(act, _ENTIRE_STRIP)
    return _ENTIRE_STRIP if closed_terms(act) is not None else _USER_STRIP


@lru_cache(maxsize=256)
def activation_derivatives(act) -> tuple:
    """``(f, f', f'', f''', f'''')`` as SymPy expressions in ``x`` (numerically safe)."""
    from ..activations import _drop_deltas
    from ..functions import safe_rewrite

    x = symbol()
    out = [expression(act)]
    for _ in range(4):
        out.append(safe_rewrite(_drop_deltas(sp.diff(out[-1], x))))
    return tuple(out)


def _product(t1: Term, t2: Term):
    """Product of a term in h1 and a term in h2, as (coeff, poly, tilt, factors)."""
    h1, h2 = h_symbols()
    factors = {}
    if t1.factor is not None:
        factors[0] = t1.factor
    if t2.factor is not None:
        factors[1] = t2.factor
    poly = sp.sympify(t1.poly) * sp.sympify(t2.poly).subs(h1, h2)
    return sp.sympify(t1.coeff * t2.coeff), poly, (t1.tilt, t2.tilt), factors


@lru_cache(maxsize=256)
def pair_expression(a, b):
    """E[a(h1) b(h2)] as a SymPy expression of (m1, m2, s11, s12, s22)."""
    m1, m2, s11, s12, s22 = params()
    mean, cov = (m1, m2), ((s11, s12), (s12, s22))
    total = sp.S.Zero
    for t1 in closed_terms(a):
        for t2 in closed_terms(b):
            c, poly, tilt, factors = _product(t1, t2)
            total += c * expect(poly, factors, mean, cov, tilt)
    return total


@lru_cache(maxsize=256)
def mean_expression(a):
    """E[a(h)] for h ~ N(m1, s11), as a SymPy expression of (m1, s11)."""
    m1, _, s11, _, _ = params()
    total = sp.S.Zero
    for t in closed_terms(a):
        factors = {} if t.factor is None else {0: t.factor}
        total += t.coeff * expect(t.poly, factors, (m1,), ((s11,),), (t.tilt,))
    return total


@lru_cache(maxsize=256)
def diag_expression(a):
    """E[a(h)^2] for h ~ N(m1, s11), as a SymPy expression of (m1, s11).

    Products of two CDF factors of the same variable: step(h)^2 = step(h) and
    step(h) step(-h) = 0 almost everywhere; Phi(h)^2 is the expectation over two
    perfectly correlated copies of h (a bivariate normal CDF with rho = s/(1+s) < 1).
    """
    m1, _, s11, _, _ = params()
    h1, h2 = h_symbols()
    total = sp.S.Zero
    for t1 in closed_terms(a):
        for t2 in closed_terms(a):
            c, poly = sp.sympify(t1.coeff * t2.coeff), sp.sympify(t1.poly) * t2.poly
            tilt = t1.tilt + t2.tilt
            f1, f2 = t1.factor, t2.factor
            if f1 is not None and f2 is not None and f1.gamma == 0 and f2.gamma == 0:
                if f1.sign != f2.sign:
                    continue
                f2 = None
            if f1 is not None and f2 is not None:  # two smooth CDFs: duplicate the variable
                total += c * expect(poly, {0: f1, 1: f2}, (m1, m1),
                                    ((s11, s11), (s11, s11)), (tilt, 0))
            else:
                f = f1 if f1 is not None else f2
                factors = {} if f is None else {0: f}
                total += c * expect(poly, factors, (m1,), ((s11,),), (tilt,))
    return total


def _normalize(expr):
    """Rewrite 1 - s12^2/(s11 s22) and friends inside roots and exponentials in terms of D."""
    _, _, _, s12, _ = params()
    D = det_symbol()

    def fragile(e):
        return isinstance(e, sp.Add) and e.has(s12) and not e.has(D)

    def fix(e):
        cand = with_det(sp.factor(sp.together(e)))
        return cand if cand.has(D) else e

    return expr.replace(fragile, fix)


def total_diff(expr, var):
    """d expr / d var for var in params(), with D = s11 s22 - s12^2 differentiated too."""
    m1, m2, s11, s12, s22 = params()
    D = det_symbol()
    dD = {s11: s22, s12: -2 * s12, s22: s11}.get(var, 0)
    out = sp.diff(expr, var)
    if dD != 0 and expr.has(D):
        out += dD * sp.diff(expr, D)
    return _normalize(out)


def derivatives2(expr) -> list:
    """Value, 5 first and 15 second partial derivatives (order of PAIR_OUTPUTS)."""
    syms = params()
    expr = _normalize(expr)
    first = [total_diff(expr, v) for v in syms]
    second = [total_diff(first[i], syms[j]) for i in range(5) for j in range(i, 5)]
    return [expr, *first, *second]


class ExpLimit(sp.Function):
    """Limit of exp(a/D) as D -> 0+ for a <= 0: 1 if a == 0 else 0 (prints sf_exp_limit)."""

    nargs = 1


class PhiRatioTol(sp.Function):
    """Phi(p/q), and at q = 0 the half step of p relative to ``scale`` (sf_Phi_ratio_tol)."""

    nargs = 3


def degenerate_limit(expr):
    """A form of ``expr`` for nearly degenerate covariances (D -> 0), or None if regular.

    Terms with a negative power of D (the density of the two kinks meeting) are
    dropped: in the weight-space Hessian of a pair whose loss is twice continuously
    differentiable (relu, selu and their mixtures) their contributions cancel and
    vanish with D.  Terms with a positive power of D vanish; exp(a/D + b) tends to
    exp(b) when a = 0 and to 0 when a < 0.  Phi(p/q) with q -> 0 keeps the actual q
    (it is the smooth transition between the two sides of a kink); at q = 0 it is
    the side of a kink on which a parallel kink lies, and when the kinks coincide p
    is zero up to rounding and the terms pair up as Phi(t) + Phi(-t) = 1, so |p|
    below 1e-12 of its scale counts as 0.  At D = 0 the result is the exact limit.
    """
    D = det_symbol()
    if not expr.has(D):
        return None
    singular = False
    kept = []
    for term in sp.Add.make_args(sp.expand(expr, power_base=False, power_exp=False,
                                           log=False, multinomial=False)):
        k = sp.S.Zero
        for f in sp.Mul.make_args(term):
            base, e = f.as_base_exp()
            if base == D:
                k += e
        if k < 0:
            singular = True
            continue
        if k > 0:
            continue
        kept.append(term)

    def pole(arg):
        return sp.factor(sp.together((arg * D).subs(D, 0)))

    poles = [e for e in expr.atoms(sp.exp) if e.args[0].has(D) and pole(e.args[0]) != 0]
    if not singular and not poles:
        return None

    def limit_exp(e):
        arg = e.args[0]
        a = pole(arg)
        b = (arg - a / D) if a != 0 else arg
        b0 = sp.cancel(sp.together(b)).subs(D, 0)
        if b0.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise ValueError(f"cannot take the degenerate limit of {e}")
        return (ExpLimit(a) if a != 0 else 1) * sp.exp(b0)

    keep_d = sp.Symbol("D_actual", positive=True)
    out = sp.Add(*kept).replace(
        lambda e: isinstance(e, PhiRatio) and e.args[1].has(D),
        lambda e: PhiRatioTol(e.args[0], e.args[1].subs(D, keep_d), _scale(e.args[0])))
    out = out.replace(lambda e: isinstance(e, sp.exp) and e.args[0].has(D), limit_exp)
    # the correlation is exactly +-1 here; computed as s12/sqrt(s11 s22) it is off by
    # rounding, and Phi2(a, a; 1 - e) - Phi(a) ~ sqrt(e) would turn 1e-16 into 1e-8
    out = out.replace(lambda e: isinstance(e, BivariateNormalCDF),
                      lambda e: BivariateNormalCDF(e.args[0], e.args[1], sp.sign(e.args[2])))
    return out.subs(D, 0).subs(keep_d, D)


def _scale(p):
    return sp.Add(*[sp.Abs(t) for t in sp.Add.make_args(sp.expand(p))])


def derivatives1(expr) -> list:
    """Value and derivatives of E(m1, s11) in the order of ONE_OUTPUTS."""
    m1, _, s11, _, _ = params()
    dm, ds = sp.diff(expr, m1), sp.diff(expr, s11)
    return [expr, dm, ds, sp.diff(dm, m1), sp.diff(dm, s11), sp.diff(ds, s11)]

"""Closed-form Gaussian expectations, derived by SymPy.

The closed-form family is every activation that is a finite sum of terms

    c * P(h) * exp(t h) * G(h),    G in {1, Phi(+-h), step(+-h)}

with P a polynomial: identity, polynomials (square, cube, user polynomials), exp,
erf(x/sqrt 2) = 2 Phi(x) - 1, normal_cdf = Phi, gelu = x Phi(x), relu = x step(x),
step, sign = 2 step(x) - 1 and selu.  We write ``Phi_g(h)`` for the CDF of N(0, g)
at h, so Phi = Phi_1 and step = Phi_0; its derivative is the N(0, g) density
``phi_g`` (a Dirac delta for g = 0).

For (h1, h2) ~ N(m, S) the expectation of a product of such terms is reduced by
three exact rules, applied recursively until only CDF factors remain:

1. exponential tilting  E[e^{t.h} F(h)] = e^{t.m + t.S.t/2} E_{N(m + S t, S)}[F(h)];
2. Stein's lemma        E[h_a F(h)] = m_a E[F] + sum_b S_ab E[d_b F];
3. Gaussian conditioning E[phi_g(h_a) F(h)] = N(m_a; 0, g + S_aa) E_{N(m', S')}[F],
   m' = m - S_.a m_a / (g + S_aa), S' = S - S_.a S_a. / (g + S_aa);

and the base cases E[Phi_g(+-h_a)] = Phi(+-m_a / sqrt(g + S_aa)) and
E[Phi_g(s_a h_a) Phi_k(s_b h_b)] = Phi2(s_a m_a/sqrt(g+S_aa), s_b m_b/sqrt(k+S_bb);
s_a s_b S_ab / sqrt((g+S_aa)(k+S_bb))) (a Gaussian integral of a Gaussian CDF is a
Gaussian CDF: Phi_g(h) = P(Z <= h) with an independent Z ~ N(0, g)).

Special cases these rules reproduce and the tests check: Saad & Solla's
(2/pi) arcsin(S12 / sqrt((1+S11)(1+S22))) for erf units without bias (Phys. Rev. E
52, 4225 (1995)) and the arc-cosine kernel of Cho & Saul (NIPS 2009) for relu.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .functions import BivariateNormalCDF, PhiRatio

__all__ = ["Term", "Factor", "expect", "params", "h_symbols"]


@dataclass(frozen=True)
class Factor:
    """``Phi_g(sign * h)`` (kind "Phi") or the density ``phi_g(h)`` (kind "phi")."""

    kind: str
    gamma: int
    sign: int = 1


@dataclass(frozen=True)
class Term:
    """``coeff * poly(h) * exp(tilt * h) * factor(h)`` in one variable ``h``."""

    coeff: object
    poly: object
    tilt: object = 0
    factor: Factor | None = None


@lru_cache(maxsize=1)
def params():
    """The symbols ``(m1, m2, s11, s12, s22)``: means and covariance of (h1, h2)."""
    m1, m2, s12 = sp.symbols("m1 m2 s12", real=True)
    s11, s22 = sp.symbols("s11 s22", nonnegative=True)
    return m1, m2, s11, s12, s22


@lru_cache(maxsize=1)
def det_symbol():
    """``D``, the determinant s11*s22 - s12**2 of the covariance, as a symbol of its own.

    Keeping it symbolic lets SymPy cancel D/sqrt(D) (conditional densities of
    degenerate pairs), and lets the C code compute it accurately from the weight
    vectors (|w1|^2 |w2 - (w1.w2/|w1|^2) w1|^2) instead of by cancellation.
    """
    return sp.Symbol("D", positive=True)


def with_det(expr):
    """Replace s11*s22 - s12**2 by the symbol D wherever it occurs."""
    m1, m2, s11, s12, s22 = params()
    D = det_symbol()
    return expr.subs(s11 * s22 - s12**2, D)


@lru_cache(maxsize=1)
def h_symbols():
    """The pre-activation symbols ``(h1, h2)`` (and the one-variable ``h`` = h1)."""
    return sp.symbols("h1 h2", real=True)


def expect(poly, factors: dict, mean: tuple, cov: tuple, tilt: tuple = (0, 0)):
    """E[poly(h) * exp(tilt.h) * prod factors] for h ~ N(mean, cov) (one or two variables).

    ``factors`` maps a variable index to a :class:`Factor`; ``mean`` and ``cov`` are
    tuples of SymPy expressions (``cov`` a tuple of rows).
    """
    n = len(mean)
    t = [sp.sympify(v) for v in tilt[:n]]
    pref = sp.S.One
    if any(v != 0 for v in t):
        quad = sum(t[a] * cov[a][b] * t[b] for a in range(n) for b in range(n))
        pref = sp.exp(sum(t[a] * mean[a] for a in range(n)) + quad / 2)
        mean = tuple(mean[a] + sum(cov[a][b] * t[b] for b in range(n)) for a in range(n))
    key = tuple(sorted(factors.items()))
    return pref * _expect(sp.expand(sp.sympify(poly)), key, tuple(mean), tuple(map(tuple, cov)))


def _simplify(expr):
    return with_det(sp.factor(sp.cancel(sp.together(expr)))) if expr.has(sp.Symbol) else expr


@lru_cache(maxsize=None)
def _expect(poly, factors: tuple, mean: tuple, cov: tuple):
    if poly == 0:
        return sp.S.Zero
    fac = dict(factors)
    H = h_symbols()[: len(mean)]
    n = len(mean)

    # 1. condition on a Gaussian density factor
    for a, f in factors:
        if f.kind == "phi":
            v = f.gamma + cov[a][a]
            pref = sp.exp(-mean[a] ** 2 / (2 * v)) / sp.sqrt(2 * sp.pi * v)
            new_mean = tuple(_simplify(mean[i] - cov[i][a] * mean[a] / v) for i in range(n))
            new_cov = tuple(tuple(_simplify(cov[i][j] - cov[i][a] * cov[a][j] / v)
                                  for j in range(n)) for i in range(n))
            del fac[a]
            if f.gamma == 0:  # h_a is now exactly zero
                poly = sp.expand(poly.subs(H[a], 0))
            return pref * _expect(poly, tuple(sorted(fac.items())), new_mean, new_cov)

    # 2. Stein's lemma on one power of a variable
    for a in range(n):
        if poly.has(H[a]):
            rest = sp.expand(poly.subs(H[a], 0))
            q = sp.expand(sp.cancel((poly - rest) / H[a]))
            out = _expect(rest, factors, mean, cov) if rest != 0 else sp.S.Zero
            out += mean[a] * _expect(q, factors, mean, cov)
            for b in range(n):
                if cov[a][b] == 0:
                    continue
                dq = sp.expand(sp.diff(q, H[b]))
                term = _expect(dq, factors, mean, cov) if dq != 0 else sp.S.Zero
                f = fac.get(b)
                if f is not None:  # d/dh Phi_g(s h) = s phi_g(h)
                    dfac = dict(fac)
                    dfac[b] = Factor("phi", f.gamma)
                    term += f.sign * _expect(q, tuple(sorted(dfac.items())), mean, cov)
                out += cov[a][b] * term
            return out

    # 3. only CDF factors left
    c = sp.sympify(poly)
    if not factors:
        return c
    if len(factors) == 1:
        ((a, f),) = factors
        return c * PhiRatio(f.sign * mean[a], sp.sqrt(f.gamma + cov[a][a]))
    (a, fa), (b, fb) = factors
    va, vb = sp.sqrt(fa.gamma + cov[a][a]), sp.sqrt(fb.gamma + cov[b][b])
    return c * BivariateNormalCDF(fa.sign * mean[a] / va, fb.sign * mean[b] / vb,
                                  fa.sign * fb.sign * cov[a][b] / (va * vb))

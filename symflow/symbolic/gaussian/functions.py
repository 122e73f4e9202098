"""SymPy functions for Gaussian expectations that SymPy lacks.

``BivariateNormalCDF(a, b, rho)`` is P(X <= a, Y <= b) for a standard bivariate normal
pair with correlation ``rho``; its partial derivatives are the classical ones
(e.g. Genz, Statistics and Computing 14 (2004), eq. (2)):

    d/da Phi2(a, b; rho) = phi(a) Phi((b - rho a) / sqrt(1 - rho^2)),
    d/drho Phi2(a, b; rho) = phi2(a, b; rho)
                           = exp(-(a^2 - 2 rho a b + b^2) / (2 (1 - rho^2))) / (2 pi sqrt(1 - rho^2)).

``PhiRatio(p, q)`` is Phi(p / q) for a standard deviation q >= 0, with the limits at
q = 0 (1, 1/2, 0 for p > 0, p = 0, p < 0) built in; it prints as ``sf_Phi_ratio``.
"""

from __future__ import annotations

import sympy as sp

from ..functions import NormalCDF

__all__ = ["BivariateNormalCDF", "PhiRatio", "std_normal_pdf"]


def std_normal_pdf(x):
    """phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


class PhiRatio(sp.Function):
    """Phi(p/q) for q >= 0 (q may be exactly zero)."""

    nargs = 2

    def fdiff(self, argindex=1):
        p, q = self.args
        dens = std_normal_pdf(p / q)
        return dens / q if argindex == 1 else -p * dens / q**2

    @classmethod
    def eval(cls, p, q):
        if p.is_zero:
            return sp.S.Half
        if q == 1:
            return NormalCDF(p)

    def _eval_evalf(self, prec):
        p, q = self.args
        return NormalCDF(p / q)._eval_evalf(prec)

    def _eval_is_real(self):
        return True

    def _latex(self, printer):
        p, q = (printer._print(a) for a in self.args)
        return r"\Phi\left(\frac{%s}{%s}\right)" % (p, q)


class BivariateNormalCDF(sp.Function):
    """Phi2(a, b; rho) = P(X <= a, Y <= b), (X, Y) standard normal with correlation rho."""

    nargs = 3

    def fdiff(self, argindex=1):
        a, b, rho = self.args
        c = sp.sqrt(1 - rho**2)
        if argindex == 1:
            return std_normal_pdf(a) * PhiRatio(b - rho * a, c)
        if argindex == 2:
            return std_normal_pdf(b) * PhiRatio(a - rho * b, c)
        return sp.exp(-(a**2 - 2 * rho * a * b + b**2) / (2 * c**2)) / (2 * sp.pi * c)

    @classmethod
    def eval(cls, a, b, rho):
        if rho.is_zero:
            return NormalCDF(a) * NormalCDF(b)
        if a.is_zero and b.is_zero:  # Sheppard's formula
            return sp.Rational(1, 4) + sp.asin(rho) / (2 * sp.pi)

    def _eval_evalf(self, prec):
        import mpmath

        a, b, rho = (sp.Float(v, prec) for v in self.args)
        with mpmath.workprec(prec + 20):
            a, b, rho = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(rho)
            if rho == 1:
                val = mpmath.ncdf(min(a, b))
            elif rho == -1:
                val = max(mpmath.mpf(0), mpmath.ncdf(a) - mpmath.ncdf(-b))
            else:
                c = mpmath.sqrt(1 - rho**2)
                val = mpmath.quad(lambda x: mpmath.npdf(x) * mpmath.ncdf((b - rho * x) / c),
                                  [-mpmath.inf, min(a, 0), a] if a > 0 else [-mpmath.inf, a])
        return sp.Float(val, prec)

    def _eval_is_real(self):
        return True

    def _latex(self, printer):
        a, b, rho = (printer._print(v) for v in self.args)
        return r"\Phi_2\left(%s, %s; %s\right)" % (a, b, rho)

"""SymPy functions that SymPy lacks but MLPs need, with numerically safe C.

``Sigmoid`` (the logistic function) and ``Softplus`` are proper SymPy functions:
they differentiate (``Softplus' = Sigmoid``, ``Sigmoid'(x) = Sigmoid(x) Sigmoid(-x)``),
evaluate with mpmath, rewrite to ``exp``/``log`` for display, and print to C as
calls of overflow-free helpers defined in the kernel template.  Writing the
derivative of the logistic as ``Sigmoid(x)*Sigmoid(-x)`` rather than
``Sigmoid(x)*(1 - Sigmoid(x))`` keeps full relative accuracy in both tails.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["Sigmoid", "Softplus", "NormalCDF", "relu", "step", "normal_cdf", "safe_rewrite"]


class Sigmoid(sp.Function):
    """Logistic function 1/(1 + exp(-x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        x = self.args[0]
        return Sigmoid(x) * Sigmoid(-x)

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.S.Half

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


class Softplus(sp.Function):
    """Softplus log(1 + exp(x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.log(2)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    _eval_rewrite_as_log = _eval_rewrite_as_exp

    def _eval_evalf(self, prec):
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])


def relu(u):
    """max(u, 0) as a Piecewise (derivative 0 at the kink, as in PyTorch)."""
    return sp.Piecewise((u, u > 0), (0, True))


def step(u):
    """Heaviside step with step(0) = 0."""
    return sp.Piecewise((1, u > 0), (0, True))


class NormalCDF(sp.Function):
    """Standard normal CDF Phi(x) = erfc(-x/sqrt 2)/2 (accurate in the far left tail).

    A function of its own because SymPy rewrites ``erfc(-y)`` as ``2 - erfc(y)``,
    which loses all relative accuracy for very negative arguments.
    """

    nargs = 1

    def fdiff(self, argindex=1):
        x = self.args[0]
        return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.S.Half

    def _eval_rewrite_as_erf(self, arg, **kwargs):
        return (1 + sp.erf(arg / sp.sqrt(2))) / 2

    def _eval_rewrite_as_erfc(self, arg, **kwargs):
        return sp.erfc(-arg / sp.sqrt(2), evaluate=False) / 2

    def _eval_evalf(self, prec):
        return self.rewrite(sp.erf)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\Phi\left(%s\right)" % printer._print(self.args[0])


def normal_cdf(u):
    """Standard normal CDF of ``u``."""
    return NormalCDF(u)


def safe_rewrite(expr):
    """Rewrite numerically fragile sub-expressions into accurate equivalents.

    Applied to activations and to each derivative SymPy derives from them:
    ``log(1+exp(u))`` -> ``Softplus(u)``, ``1/(1+exp(-u))`` -> ``Sigmoid(u)``,
    ``exp(u) - 1`` -> ``expm1(u)``, ``log(1+u)`` -> ``log1p(u)`` and
    ``c - c*tanh(u)**2`` -> ``c*sech(u)**2`` and
    ``R*Sigmoid(u) - R*Sigmoid(-u)`` -> ``R*tanh(u/2)`` (exact near u = 0, where the
    difference of sigmoids cancels) (no cancellation for large |u|).
    """
    from sympy.codegen.cfunctions import expm1, log1p

    u = sp.Wild("u")
    expr = expr.replace(sp.log(1 + sp.exp(u)), Softplus(u))
    expr = expr.replace(1 / (1 + sp.exp(u)), Sigmoid(-u))
    expr = expr.replace(sp.exp(u) / (1 + sp.exp(u)), Sigmoid(u))
    expr = expr.replace(sp.log(1 + u), log1p(u))

    def is_expm1(e):
        return isinstance(e, sp.Add) and len(e.args) == 2 and sp.S.NegativeOne in e.args and any(
            isinstance(t, sp.exp) for t in e.args)

    def to_expm1(e):
        (t,) = [t for t in e.args if isinstance(t, sp.exp)]
        return expm1(t.args[0])

    expr = expr.replace(is_expm1, to_expm1)

    def tanh2_terms(e):
        """Pairs (term, u) of ``k*tanh(u)**2`` in the Add ``e`` whose constant is -k."""
        if not isinstance(e, sp.Add):
            return []
        const = sum((t for t in e.args if t.is_Number), sp.S.Zero)
        k = sp.Wild("k", properties=[lambda v: v.is_Number])
        found = []
        for t in e.args:
            m = t.match(k * sp.tanh(u) ** 2)
            if m is not None and m[k] == -const:
                found.append((t, m[u], m[k]))
        return found

    def to_sech2(e):
        term, arg, k = tanh2_terms(e)[0]
        rest = [t for t in e.args if t is not term and not t.is_Number]
        return sp.Add(*rest) - k * sp.sech(arg) ** 2

    expr = expr.replace(lambda e: bool(tanh2_terms(e)), to_sech2)
    expr = expr.replace(lambda e: isinstance(e, sp.Add), _combine_sigmoid_differences)
    return expr


def _combine_sigmoid_differences(add):
    """Within a sum, replace ``R*S(u) - R*S(-u)`` (S the logistic) by ``R*tanh(u/2)``."""
    terms = list(sp.Add.make_args(add))
    changed = True
    while changed:
        changed = False
        for i, t in enumerate(terms):
            for s in sorted(t.atoms(Sigmoid), key=sp.default_sort_key):
                rest = t / s
                partner = -rest * Sigmoid(-s.args[0])
                if partner in terms[:i] + terms[i + 1:]:
                    j = next(k for k, v in enumerate(terms) if k != i and v == partner)
                    combined = rest * sp.tanh(s.args[0] / 2)
                    terms = [v for k, v in enumerate(terms) if k not in (i, j)] + [combined]
                    changed = True
                    break
            if changed:
                break
    return sp.Add(*terms)

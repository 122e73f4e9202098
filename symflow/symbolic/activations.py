"""Activations as SymPy expressions and their derivatives.

Every activation is a SymPy expression in one real symbol ``x``; first and
second derivatives are obtained with ``sympy.diff`` and then passed through
:func:`~symflow.symbolic.functions.safe_rewrite` so that the printed C keeps
full accuracy and never overflows for |x| up to 1e3 (where the true value is
representable).  Derivatives of kinks (relu, abs, step, sign, min/max) are
taken almost everywhere: the Dirac deltas SymPy produces are dropped, which is
the convention of automatic differentiation frameworks.

Nothing here imports SymPy at module import time except through the functions,
so specs can be built and cache keys computed without SymPy.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["NAMED", "SELU_ALPHA", "SELU_LAMBDA", "symbol", "expression", "derivatives"]

#: Named activations (design.md). ``softmax`` is only valid as the output layer.
NAMED = (
    "identity", "relu", "softplus", "sigmoid", "tanh", "erf", "normal_cdf", "gelu", "silu",
    "selu", "square", "cube", "g", "exp", "sign", "step",
)

# Klambauer et al., "Self-Normalizing Neural Networks" (2017), eq. (14).
SELU_ALPHA = "1.6732632423543772848170429916717"
SELU_LAMBDA = "1.0507009873554804934193349852946"


def symbol():
    """The real symbol ``x`` every activation is written in."""
    import sympy as sp

    return sp.Symbol("x", real=True)


def _named(name: str, x):
    import sympy as sp
    from sympy.codegen.cfunctions import expm1

    from .functions import Sigmoid, Softplus, normal_cdf, relu, step

    if name == "identity":
        return x
    if name == "relu":
        return relu(x)
    if name == "softplus":
        return Softplus(x)
    if name == "sigmoid":
        return Sigmoid(x)
    if name == "tanh":
        return sp.tanh(x)
    if name == "erf":  # erf(x/sqrt 2), MLPGradientFlow's sigmoid2
        return sp.erf(x / sp.sqrt(2))
    if name == "normal_cdf":
        return normal_cdf(x)
    if name == "gelu":
        return x * normal_cdf(x)
    if name == "silu":
        return x * Sigmoid(x)
    if name == "selu":
        lam, alpha = sp.Float(SELU_LAMBDA, 34), sp.Float(SELU_ALPHA, 34)
        return lam * sp.Piecewise((x, x > 0), (alpha * expm1(x), True))
    if name == "square":
        return x**2 / 2
    if name == "cube":
        return x**3
    if name == "g":
        return Sigmoid(4 * x) + Softplus(x)
    if name == "exp":
        return sp.exp(x)
    if name == "sign":
        return sp.Piecewise((1, x > 0), (-1, x < 0), (0, True))
    if name == "step":
        return step(x)
    raise KeyError(name)


def expression(activation):
    """SymPy expression of an activation given as a spec entry.

    ``activation`` is a named activation (``"tanh"``), an
    :class:`~symflow.spec.ExpressionActivation`, or a SymPy expression in one symbol.

    >>> expression("square")
    x**2/2
    """
    return _expression(activation)


@lru_cache(maxsize=256)
def _expression(activation):
    import sympy as sp

    from ..spec import ExpressionActivation
    from .functions import safe_rewrite
    from .parse import to_sympy

    x = symbol()
    if isinstance(activation, str):
        expr = _named(activation, x)
    elif isinstance(activation, ExpressionActivation):
        if activation.text is not None:
            expr = to_sympy(activation.text, x)
        else:
            expr = activation.expr
            (free,) = expr.free_symbols
            expr = expr.xreplace({free: x})
        expr = safe_rewrite(expr)
    else:  # pragma: no cover - the spec validates entries
        raise TypeError(f"not an activation: {activation!r}")
    return sp.sympify(expr)


@lru_cache(maxsize=256)
def derivatives(activation):
    """``(f, f', f'')`` of an activation, derived by SymPy and made numerically safe.

    >>> f, d1, d2 = derivatives("softplus")
    >>> d1
    Sigmoid(x)
    """
    import sympy as sp

    from .functions import safe_rewrite

    x = symbol()
    f = expression(activation)
    d1 = safe_rewrite(_drop_deltas(sp.diff(f, x)))
    d2 = safe_rewrite(_drop_deltas(sp.diff(d1, x)))
    return f, d1, d2


def _drop_deltas(expr):
    import sympy as sp

    return sp.piecewise_fold(expr.replace(sp.DiracDelta, lambda *args: sp.S.Zero))

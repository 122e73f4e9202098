"""Which named activations have closed-form Gaussian expectations, and which have kinks.

Kept free of SymPy: a GaussianNet whose kernels are cached checks its pairs with
these sets and never imports SymPy.  User expressions need SymPy to classify
(``symflow.symbolic.gaussian.pairs``).
"""

from __future__ import annotations

__all__ = ["CLOSED_NAMES", "KINKED_NAMES", "is_closed", "is_smooth"]

#: Named activations that are sums of polynomial * exp * Gaussian-CDF terms
#: (``pairs._named_terms`` has their decompositions; a test keeps the two in step).
CLOSED_NAMES = frozenset({"identity", "square", "cube", "exp", "erf", "normal_cdf", "gelu",
                          "relu", "step", "sign", "selu"})
#: Named activations with a kink or a jump (no exponentially convergent quadrature).
KINKED_NAMES = frozenset({"relu", "step", "sign", "selu"})


def is_closed(act) -> bool:
    """Whether E[f g] has a closed form for this activation (with any closed partner)."""
    if isinstance(act, str):
        return act in CLOSED_NAMES
    from .pairs import closed_terms

    return closed_terms(act) is not None


def is_smooth(act) -> bool:
    """Whether the activation is smooth enough for exponentially convergent quadrature."""
    if isinstance(act, str):
        return act not in KINKED_NAMES
    import sympy as sp

    from ..activations import expression

    return not expression(act).has(sp.Piecewise, sp.Heaviside, sp.Abs, sp.sign, sp.Min,
                                   sp.Max, sp.floor, sp.ceiling)

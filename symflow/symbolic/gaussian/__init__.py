"""Gaussian expectations of activations: closed forms by SymPy, quadrature otherwise."""

from .engine import expect, params
from .pairs import (
    closed_terms, derivatives1, derivatives2, diag_expression, is_closed, is_smooth,
    mean_expression, pair_expression,
)

__all__ = ["expect", "params", "closed_terms", "is_closed", "is_smooth", "pair_expression",
           "mean_expression", "diag_expression", "derivatives1", "derivatives2"]

"""Emit stage for infinite-data (Gaussian input) teacher-student kernels.

One compiled module serves every GaussianNet whose teacher and student use a given
list of distinct activations (widths, input dimension, outputs and biases are
runtime arguments).  Closed-form pair expectations and their derivatives come from
:mod:`symflow.symbolic.gaussian` and are printed with symflow's C printer after
common-subexpression elimination; activations outside the closed-form family get
their derivatives up to order four printed for the quadrature loops of
``templates/gaussian.c.j2``.
"""

from __future__ import annotations

import hashlib
import re

from ._version import __version__
from .emit import _activation_name, _comment, _environment, _math_macros, print_c, template_text
from .spec import _activation_key

__all__ = ["GaussianKernels", "GAUSS_API_VERSION"]

#: Version of the C interface declared in ``templates/gaussian_cdef.h.j2``.
GAUSS_API_VERSION = 1


def _assignments(exprs, targets) -> list[str]:
    import sympy as sp

    temps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("t"), order="canonical")
    lines = [f"const double {sym} = {print_c(val)};" for sym, val in temps]
    lines += [f"{t} = {print_c(v)};" for t, v in zip(targets, reduced)]
    return lines


class GaussianKernels:
    """The compiled-module "spec" of a list of distinct activations (build-stage protocol)."""

    def __init__(self, acts):
        self.acts = tuple(acts)
        self.key = "gauss|" + "|".join(_activation_key(a) for a in self.acts)
        names = [a if isinstance(a, str) else "expr" for a in self.acts]
        self.slug = re.sub(r"[^A-Za-z0-9_]", "_", "gauss_" + "_".join(names))
        self.api_version = GAUSS_API_VERSION

    def __repr__(self) -> str:
        return f"GaussianKernels({list(self.acts)!r})"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]

    def cdef(self) -> str:
        return _environment().from_string(template_text("gaussian_cdef.h.j2")).render()

    def emit_source(self) -> str:
        from .symbolic.gaussian.pairs import (
            PAIR_OUTPUTS, activation_derivatives, degenerate_limit, derivatives1, derivatives2,
            diag_expression, is_closed, mean_expression, pair_expression, strip_width,
        )
        from .symbolic.activations import symbol

        x = symbol()
        acts = []
        for i, act in enumerate(self.acts):
            body = None
            if not is_closed(act) or any(not is_closed(b) for b in self.acts):
                import sympy as sp

                ds = [sp.sympify(d).xreplace({x: sp.Symbol("x", real=True)})
                      for d in activation_derivatives(act)]
                body = _assignments(ds, [f"d[{j}]" for j in range(5)])
            acts.append({"index": i, "name": _activation_name(act), "quad_body": body,
                         "strip": repr(float(strip_width(act)))})
        pairs, ones = [], []
        for i, a in enumerate(self.acts):
            for j, b in enumerate(self.acts):
                body = deg_body = None
                if is_closed(a) and is_closed(b) and i <= j:  # (b, a) by symmetry in C
                    exprs = derivatives2(pair_expression(a, b))
                    targets = [f"out[{t}]" for t in range(len(PAIR_OUTPUTS))]
                    body = _assignments(exprs, targets)
                    limits = [degenerate_limit(e) for e in exprs]
                    if any(v is not None for v in limits):
                        deg = [e if v is None else v for e, v in zip(exprs, limits)]
                        deg_body = _assignments(deg, targets)
                pairs.append({"a": i, "b": j, "body": body, "deg_body": deg_body,
                              "name_a": _activation_name(a), "name_b": _activation_name(b)})
            for which, fn in ((0, mean_expression), (1, diag_expression)):
                body = None
                if is_closed(a):
                    body = _assignments(derivatives1(fn(a)), [f"out[{t}]" for t in range(6)])
                what = "E[f(h)]" if which == 0 else "E[f(h)^2]"
                ones.append({"a": i, "which": which, "body": body,
                             "comment": _comment(f"{what} for f = {_activation_name(a)}")})
        key_c = self.key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        context = {
            "version": __version__, "api_version": GAUSS_API_VERSION, "spec_key_c": key_c,
            "math_macros": _math_macros(), "acts": acts, "pairs": pairs, "ones": ones,
            "acts_comment": _comment(", ".join(_activation_name(a) for a in self.acts)),
        }
        return _environment().from_string(template_text("gaussian.c.j2")).render(**context)

"""Inspect the formulas symflow uses, as SymPy expressions (text or LaTeX).

For every activation: the expression and its first and second derivatives --
exactly the expressions that are printed into the C kernels.  For a small
network (default at most 50 parameters): each output ``f_o`` and the per-sample
loss as one expression in named parameters (``W1_0_1`` is layer 1, row 0,
column 1; ``b1_0`` its bias), inputs ``x_0, x_1, ...`` and targets ``y_0, ...``.
"""

from __future__ import annotations

from ..errors import SpecError
from ..spec import MLP, _activation

__all__ = ["formulas", "format_formulas", "network_expressions", "gaussian_formulas"]


def _keys(act) -> tuple[str, str, str]:
    if isinstance(act, str):
        return f"{act}(x)", f"{act}'(x)", f"{act}''(x)"
    text = act.text if act.text is not None else str(act.expr)
    return f"[{text}]", f"[{text}]'", f"[{text}]''"


def network_expressions(spec: MLP):
    """``(outputs, loss)``: SymPy expressions of one sample's outputs and loss.

    For a softmax output the loss is written for the label symbol ``y`` as
    ``log(sum_k exp(z_k)) - z_y`` via a Piecewise over the classes.
    """
    import sympy as sp

    from .activations import expression, symbol

    x = symbol()
    names = iter(spec.parameter_names())
    h = list(sp.symbols(f"x_0:{spec.din}", real=True))
    z = []
    for li, ly in enumerate(spec.layers, start=1):
        W = [[sp.Symbol(next(names), real=True) for _ in h] for _ in range(ly.width)]
        b = [sp.Symbol(next(names), real=True) for _ in range(ly.width)] if ly.bias else None
        z = [sum((W[i][j] * h[j] for j in range(len(h))), sp.S.Zero) + (b[i] if b else 0)
             for i in range(ly.width)]
        if li < spec.depth or not spec.softmax:
            h = [expression(act).xreplace({x: zi}) for act, zi in zip(ly.activations(), z)]
    if spec.softmax:
        label = sp.Symbol("y", integer=True, nonnegative=True)
        lse = sp.log(sum((sp.exp(zi) for zi in z), sp.S.Zero))
        picked = sp.Piecewise(*[(zi, sp.Eq(label, k)) for k, zi in enumerate(z[:-1])],
                              (z[-1], True))
        total = sum((sp.exp(zi) for zi in z), sp.S.Zero)
        outputs = [sp.exp(zi) / total for zi in z]
        return outputs, lse - picked
    ys = sp.symbols(f"y_0:{spec.dout}", real=True)
    return h, sum(((fo - yo) ** 2 for fo, yo in zip(h, ys)), sp.S.Zero)


def gaussian_formulas(a, b=None) -> dict:
    """Gaussian expectations of activations (closed-form family) and their derivatives.

    With ``b``: E[a(h1) b(h2)] for (h1, h2) ~ N((m1, m2), [[s11, s12], [s12, s22]]) and
    its 20 first and second partial derivatives; ``D`` stands for s11*s22 - s12**2.
    Without ``b``: E[a(h)] and E[a(h)^2] for h ~ N(m1, s11).

    >>> import sympy as sp
    >>> e = gaussian_formulas("erf", "erf")["E[erf(h1) erf(h2)]"]
    >>> e.subs({sp.Symbol("m1", real=True): 0, sp.Symbol("m2", real=True): 0})
    2*asin(s12/(sqrt(s11 + 1)*sqrt(s22 + 1)))/pi
    """
    from .gaussian.pairs import (
        PAIR_OUTPUTS, derivatives2, diag_expression, is_closed, mean_expression, pair_expression,
    )

    acts = [_activation(a, "gaussian_formulas()")] + (
        [] if b is None else [_activation(b, "gaussian_formulas()")])
    names = [a if isinstance(a, str) else repr(a) for a in acts]
    for act, name in zip(acts, names):
        if act == "softmax" or not is_closed(act):
            raise SpecError(
                f"{name} has no closed-form Gaussian expectation (symflow integrates it "
                f"numerically); closed forms exist for identity, polynomials, exp, erf, "
                f"normal_cdf, gelu, relu, step, sign and selu")
    if b is None:
        return {f"E[{names[0]}(h)]": mean_expression(acts[0]),
                f"E[{names[0]}(h)^2]": diag_expression(acts[0])}
    out = {}
    head = f"E[{names[0]}(h1) {names[1]}(h2)]"
    for key, expr in zip(PAIR_OUTPUTS, derivatives2(pair_expression(acts[0], acts[1]))):
        if key == "E":
            out[head] = expr
        elif len(key) <= 3:
            out[f"d{head}/d{key}"] = expr
        else:
            split = 2 if key.startswith("m") else 3
            out[f"d2{head}/d{key[:split]}d{key[split:]}"] = expr
    return out


def formulas(obj, network: bool | None = None, max_params: int = 50) -> dict:
    """SymPy expressions symflow uses for an activation or an architecture.

    ``obj`` is an activation (name, expression string, SymPy expression) or an
    :class:`~symflow.MLP`.  For an MLP the result holds every activation with its
    derivatives and, when the network has at most ``max_params`` parameters (or
    ``network=True``), each output ``f_o`` and the per-sample ``loss``.

    >>> f = formulas("softplus")
    >>> list(f)
    ['softplus(x)', "softplus'(x)", "softplus''(x)"]
    >>> f["softplus'(x)"]
    Sigmoid(x)
    """
    from .activations import derivatives

    if isinstance(obj, MLP):
        acts = []
        for ly in obj.layers:
            acts += [a for a in ly.activations() if a != "softmax"]
        acts = list(dict.fromkeys(acts))
    else:
        acts = [_activation(obj, "formulas()")]
        if acts[0] == "softmax":
            raise SpecError("softmax is not a scalar activation; pass the whole MLP instead")
    out = {}
    for act in acts:
        for key, expr in zip(_keys(act), derivatives(act)):
            out[key] = expr
    if isinstance(obj, MLP):
        small = obj.nparams <= max_params
        if network and not small:
            raise SpecError(
                f"the network has {obj.nparams} parameters; whole-network expressions are "
                f"limited to max_params={max_params} (raise max_params to force it)"
            )
        if network or (network is None and small):
            outputs, loss = network_expressions(obj)
            for o, fo in enumerate(outputs):
                out[f"f_{o}"] = fo
            out["loss"] = loss
    elif network:
        raise SpecError("network=True needs an MLP, not a single activation")
    return out


def format_formulas(formulas_dict: dict, latex: bool = False) -> str:
    """One ``name = expression`` line per formula, as text or LaTeX."""
    import sympy as sp

    lines = []
    for name, expr in formulas_dict.items():
        if latex:
            lines.append(f"{name} &= {sp.latex(expr)}")
        else:
            lines.append(f"{name} = {sp.sstr(expr)}")
    return "\n".join(lines) + "\n"

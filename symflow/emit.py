"""Emit stage: SymPy expressions -> C source via a strict printer and Jinja2 templates.

The printer is a subclass of SymPy's C99 printer that knows symflow's safe
primitives, expands small integer powers into products, and raises
:class:`~symflow.errors.EmitError` on anything it cannot print (instead of
emitting a comment and wrong code).  Templates (``templates/``) hold structure
only -- loops over samples, neurons and layers -- never formulas.  Output is
deterministic: same spec and generator version give byte-identical source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ._version import __version__
from .errors import EmitError
from .spec import MLP

__all__ = ["API_VERSION", "emit_source", "cdef", "template_text", "templates_digest", "print_c"]

#: Version of the C interface declared in ``templates/cdef.h.j2``.
API_VERSION = 7

#: One hidden layer into one output neuron with at most this many inputs: the gradient
#: kernel folds the hidden layer's deltas into its gradient sums (kernels.c.j2), with a
#: stack buffer of (din + 1) rows of a block.
_FUSED_INPUT_MAX = 16

_TEMPLATES = ("kernels.c.j2", "cdef.h.j2", "generated_module.py.j2", "math_helpers.h",
              "gaussian.c.j2", "gaussian_cdef.h.j2", "gaussian_math.h", "thread_pool.h",
              "python_entry.h")


def _template_dir() -> Path:
    try:
        root = resources.files("symflow.templates")
        if root.joinpath("kernels.c.j2").is_file():
            return Path(str(root))
    except ModuleNotFoundError:
        pass
    # Running from a source checkout without installing: templates/ is beside symflow/.
    return Path(__file__).resolve().parent.parent / "templates"


def template_text(name: str) -> str:
    """Text of one of symflow's templates."""
    return (_template_dir() / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def templates_digest() -> str:
    """SHA-256 over all templates (part of every cache key)."""
    h = hashlib.sha256()
    for name in _TEMPLATES:
        h.update(name.encode())
        h.update(template_text(name).encode())
    return h.hexdigest()


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(template_text),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@lru_cache(maxsize=1)
def cdef() -> str:
    """The cffi declarations of every generated module (the same for all architectures)."""
    return _environment().from_string(template_text("cdef.h.j2")).render()


# ---------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------
def _printer_class():
    import sympy as sp
    from sympy.printing.c import C99CodePrinter

    class SymflowCPrinter(C99CodePrinter):
        """C99 printer for symflow kernels: strict, safe primitives, no pow() for small n."""

        def __init__(self):
            super().__init__({"strict": True})

        def _print_not_supported(self, expr):
            raise EmitError(
                f"cannot print {type(expr).__name__} ({expr}) as C; rewrite the activation with "
                f"the supported functions (exp, log, tanh, erf, sigmoid, softplus, ...)"
            )

        def _print_Pow(self, expr):
            base, exp = expr.args
            if exp.is_Integer and 1 <= abs(int(exp)) <= 8:
                b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"] + 1)
                prod = "*".join([b] * abs(int(exp)))
                if exp == 1:
                    return prod
                # parenthesised: the Mul printer puts this after "/" for denominators
                return f"({prod})" if exp > 0 else f"(1.0/({prod}))"
            return super()._print_Pow(expr)

        def _print_exp(self, expr):
            return f"sf_exp({self._print(expr.args[0])})"

        def _print_log1p(self, expr):
            return f"sf_log1p({self._print(expr.args[0])})"

        def _print_Sigmoid(self, expr):
            return f"sf_sigmoid({self._print(expr.args[0])})"

        def _print_Softplus(self, expr):
            return f"sf_softplus({self._print(expr.args[0])})"

        def _print_Function(self, expr):
            name = _GIVEN_EXP.get(type(expr).__name__)
            if name is not None:
                return f"{name}({self._print(expr.args[0])}, ex)"
            return super()._print_Function(expr)

        def _print_NormalCDF(self, expr):
            return f"sf_normal_cdf({self._print(expr.args[0])})"

        def _print_BivariateNormalCDF(self, expr):
            return "sf_bvn_c({})".format(", ".join(self._print(a) for a in expr.args))

        def _print_PhiRatio(self, expr):
            return "sf_Phi_ratio({})".format(", ".join(self._print(a) for a in expr.args))

        def _print_PhiRatioTol(self, expr):
            return "sf_Phi_ratio_tol({})".format(", ".join(self._print(a) for a in expr.args))

        def _print_ExpLimit(self, expr):
            return f"sf_exp_limit({self._print(expr.args[0])})"

        def _print_Abs(self, expr):
            return f"fabs({self._print(expr.args[0])})"

        def _print_tanh(self, expr):
            return f"sf_tanh({self._print(expr.args[0])})"

        def _print_sech(self, expr):
            return f"sf_sech({self._print(expr.args[0])})"

        def _print_sign(self, expr):
            return f"sf_sign({self._print(expr.args[0])})"

        def _print_Rational(self, expr):
            return f"{expr.p}.0/{expr.q}.0"

        def _print_Integer(self, expr):
            return f"{expr.p}.0" if abs(expr.p) < 2**53 else super()._print_Integer(expr)

        def _print_Float(self, expr):
            return repr(float(expr))

    return SymflowCPrinter


@lru_cache(maxsize=1)
def _printer():
    return _printer_class()()


def print_c(expr) -> str:
    """Print one SymPy expression as a C expression (raises EmitError if unsupported)."""
    import sympy as sp

    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise EmitError(f"expression {expr} is not finite; it cannot be evaluated in C")
    try:
        return _printer().doprint(expr)
    except EmitError:
        raise
    except Exception as exc:  # SymPy's own "not supported" errors
        raise EmitError(f"cannot print {expr} as C: {exc}") from exc


def _function_body(exprs, outputs) -> list[str]:
    """CSE over ``exprs``; ``outputs`` are C lvalues (``return`` for the last one)."""
    import sympy as sp

    temps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("t"), order="canonical")
    lines = [f"const double {sym} = {print_c(val)};" for sym, val in temps]
    for target, value in zip(outputs, reduced):
        if target == "return":
            continue
        lines.append(f"{target} = {print_c(value)};")
    lines.append(f"return {print_c(reduced[outputs.index('return')])};")
    return lines


def _bodies(f, d1, d2):
    return (
        _function_body([f], ["return"]),
        _function_body([f, d1], ["return", "*d1"]),
        _function_body([f, d1, d2], ["return", "*d1", "*d2"]),
    )


# The C helpers that take e = exp(-|u|) precomputed (math_helpers.h), by the name of the
# SymPy function that stands for them.  They print with the argument ``ex``, the
# parameter that carries e in the templates' sf_act functions (kernels.c.j2).
_GIVEN_EXP = {"SigmoidGivenExp": "sf_sigmoid_e", "SoftplusGivenExp": "sf_softplus_e",
              "SechGivenExp": "sf_sech_e"}


@lru_cache(maxsize=1)
def _given_exp_functions():
    """Undefined SymPy functions f(u) that print as ``sf_..._e(u, ex)``."""
    import sympy as sp

    return {name: sp.Function(name) for name in _GIVEN_EXP}


def _share_exp(exprs, x):
    """Rewrite Sigmoid, Softplus and sech of +-x to take e = exp(-|x|) from ``ex``.

    All three C helpers begin with that exponential.  The kernels' row loops compute
    it for a row of samples in a first loop and the activation from it in a second
    (see math_helpers.h).  Calls with any other argument (sigmoid(4x)) keep the
    one-argument helpers.  Returns the rewritten ``(f, f', f'')`` and, for orders 0,
    1 and 2, whether that order's body (f and the derivatives up to it) uses ``ex``.
    """
    import sympy as sp

    from .symbolic.functions import Sigmoid, Softplus

    fns = _given_exp_functions()
    table = {Sigmoid: fns["SigmoidGivenExp"], Softplus: fns["SoftplusGivenExp"],
             sp.sech: fns["SechGivenExp"]}
    rep = {}
    for e in exprs:
        for call in e.atoms(Sigmoid, Softplus, sp.sech):
            if call.args[0] in (x, -x):
                rep[call] = table[type(call)](call.args[0])
    out = [e.xreplace(rep) for e in exprs]
    uses = [bool(e.atoms(*fns.values())) for e in out]
    return out, [any(uses[:order + 1]) for order in range(len(out))]


def _math_macros() -> list[tuple[str, str]]:
    """Fallback definitions of the <math.h> constants SymPy's C printer may use."""
    import math

    values = {
        "M_E": math.e, "M_LOG2E": 1 / math.log(2), "M_LOG10E": 1 / math.log(10),
        "M_LN2": math.log(2), "M_LN10": math.log(10), "M_PI": math.pi, "M_PI_2": math.pi / 2,
        "M_PI_4": math.pi / 4, "M_1_PI": 1 / math.pi, "M_2_PI": 2 / math.pi,
        "M_2_SQRTPI": 2 / math.sqrt(math.pi), "M_SQRT2": math.sqrt(2),
        "M_SQRT1_2": math.sqrt(0.5),
    }
    return [(name, repr(value)) for name, value in values.items()]


# ---------------------------------------------------------------------------------------
# template context
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
    start: int
    stop: int
    act: int


def _runs(acts, index_of) -> list[_Run]:
    runs: list[_Run] = []
    for i, act in enumerate(acts):
        k = index_of[act]
        if runs and runs[-1].act == k and runs[-1].stop == i:
            runs[-1] = _Run(runs[-1].start, i + 1, k)
        else:
            runs.append(_Run(i, i + 1, k))
    return runs


def _comment(text: str) -> str:
    """Text that is safe inside a C block comment (and on one line)."""
    return text.replace("*/", "* /").replace("/*", "/ *").replace("\n", " ")


def _activation_name(act) -> str:
    return _comment(act if isinstance(act, str) else f"expression {act!r}")


def _context(spec: MLP) -> dict:
    import sympy as sp

    from .symbolic.activations import _drop_deltas, derivatives, symbol
    from .symbolic.functions import safe_rewrite

    widths, offsets = spec.widths, spec.offsets
    L = spec.depth

    # distinct activations in order of first use
    act_index: dict = {}
    for ly in spec.layers:
        for act in ly.activations():
            if act != "softmax" and act not in act_index:
                act_index[act] = len(act_index)
    acts = []
    for act, k in act_index.items():
        exprs, shared = _share_exp(derivatives(act), symbol())
        b0, b1, b2 = _bodies(*exprs)
        acts.append({"index": k, "name": _activation_name(act), "body0": b0, "body1": b1,
                     "body2": b2, "ex": shared})

    outs, out_index = [], {}
    if not spec.softmax:
        x = symbol()
        z, y = sp.Symbol("z", real=True), sp.Symbol("y", real=True)
        for act in dict.fromkeys(spec.layers[-1].activations()):
            f = derivatives(act)[0].xreplace({x: z})
            phi = (f - y) ** 2
            d1 = safe_rewrite(_drop_deltas(sp.diff(phi, z)))
            d2 = safe_rewrite(_drop_deltas(sp.diff(d1, z)))
            b0, b1, b2 = _bodies(phi, d1, d2)
            out_index[act] = len(outs)
            outs.append({"index": out_index[act], "name": f"({_activation_name(act)} - y)^2",
                         "body0": b0, "body1": b1, "body2": b2})

    # per-sample neuron arrays and Hessian workspace layout
    zoff, z_total = [], 0
    for ly in spec.layers:
        zoff.append(z_total)
        z_total += ly.width
    work = 0
    moff = []
    for ly in spec.layers:
        moff.append(work)
        work += ly.width * ly.width
    uoff = work
    work += max([widths[i + 1] * widths[i] for i in range(1, L)], default=0)

    layers = []
    for li, ly in enumerate(spec.layers, start=1):
        nin = widths[li - 1]
        acts_l = ly.activations()
        layers.append({
            "l": li, "n": ly.width, "nin": nin, "bias": ly.bias, "off": offsets[li - 1],
            "boff": offsets[li - 1] + ly.width * nin, "end": offsets[li],
            "zoff": zoff[li - 1], "inoff": zoff[li - 2] if li > 1 else 0,
            "moff": moff[li - 1], "last": li == L,
            "runs": [] if acts_l[0] == "softmax" else _runs(acts_l, act_index),
            "outruns": [] if spec.softmax or li != L else _runs(acts_l, out_index),
        })

    pairs, pair_of = [], {}
    for m in range(2, L + 1):
        for lo in range(1, m):
            nm, nl, nmid = widths[m], widths[lo], widths[m - 1]
            entry = {"m": m, "l": lo, "nm": nm, "nl": nl, "nmid": nmid,
                     "woff": offsets[m - 1], "szoff": zoff[m - 2], "mmoff": moff[m - 1],
                     "mzoff": zoff[m - 1],
                     "coff": work, "toff": work + nmid * nl, "aoff": work + nmid * nl + nm * nl,
                     "tprev": pair_of[(m - 1, lo)]["toff"] if m - 1 > lo else 0}
            work += nmid * nl + 2 * nm * nl
            pair_of[(m, lo)] = entry
            pairs.append(entry)

    blocks = []
    for m in range(1, L + 1):
        for lo in range(1, m + 1):
            lm, ll = layers[m - 1], layers[lo - 1]
            blocks.append({
                "m": m, "l": lo, "nm": lm["n"], "nl": ll["n"], "mm": lm["nin"] + int(lm["bias"]),
                "nminm": lm["nin"], "moff_w": lm["off"], "mboff": lm["boff"],
                "minoff": lm["inoff"], "linoff": ll["inoff"], "dzoff": lm["zoff"],
                "nlinl": ll["nin"], "loff_w": ll["off"], "lbias": ll["bias"], "lboff": ll["boff"],
                "kterm": "none" if m == L else ("diag" if m == lo == L - 1 else "full"),
                "cross": "none" if m == lo else ("diag" if m == lo + 1 else "full"),
                "koff": lm["moff"] if m == lo else pair_of[(m, lo)]["aoff"],
                "coff": pair_of[(m, lo)]["coff"] if m != lo else 0,
                "czoff": zoff[m - 2] if m >= 2 else 0,
            })
            blocks[-1]["full"] = "full" in (blocks[-1]["kterm"], blocks[-1]["cross"])
    # block-layout rows (SF_GB samples each) of the dense blocks' K and C
    rbwork = 0
    for blk in blocks:
        if blk["kterm"] == "full":
            blk["kboff"], rbwork = rbwork, rbwork + blk["nm"] * blk["nl"]
        if blk["cross"] == "full":
            blk["cboff"], rbwork = rbwork, rbwork + blk["nminm"] * blk["nl"]

    key_c = spec.key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return {
        "version": __version__, "api_version": API_VERSION, "arch_repr": _comment(repr(spec)),
        "spec_key_c": key_c, "math_macros": _math_macros(),
        "L": L, "P": spec.nparams, "din": spec.din, "dout": spec.dout,
        "softmax": spec.softmax, "ntot": z_total, "work": work, "uoff": uoff,
        "acts": acts, "outs": outs, "layers": layers, "pairs": pairs, "blocks": blocks,
        "any_full": any(blk["full"] for blk in blocks), "rbwork": rbwork,
        "fuse_input": L == 2 and widths[2] == 1 and not spec.softmax
        and spec.din <= _FUSED_INPUT_MAX,
    }


def emit_source(spec: MLP) -> str:
    """Deterministic C source of all kernels of ``spec``.

    >>> src = emit_source(MLP(1, [(2, "tanh", True), (1, "identity", False)]))
    >>> src.splitlines()[0].startswith("/* generated by symflow")
    True
    """
    if not isinstance(spec, MLP):
        raise TypeError(f"emit_source needs an MLP spec, got {type(spec).__name__}")
    template = _environment().from_string(template_text("kernels.c.j2"))
    return template.render(**_context(spec))

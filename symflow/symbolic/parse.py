"""A restricted parser for activation strings such as ``"x*tanh(x)"``.

User text is never passed to ``eval`` or ``sympify``.  It is parsed with
Python's ``ast`` module and every node is checked against a whitelist: the one
variable ``x``, numeric literals, the constants ``pi`` and ``e``, the operators
``+ - * / **`` and calls of the functions in :data:`FUNCTIONS`.  Checking needs
no SymPy (so a spec can be validated and hashed without it); building the SymPy
expression happens only when a formula is actually derived.
"""

from __future__ import annotations

import ast
import difflib
import math

from ..errors import ActivationError

__all__ = ["FUNCTIONS", "VARIABLE", "canonical_text", "to_sympy"]

VARIABLE = "x"
CONSTANTS = ("pi", "e")

#: Functions a user expression may call, with their number of arguments.
FUNCTIONS: dict[str, int] = {
    "exp": 1, "expm1": 1, "log": 1, "log1p": 1, "sqrt": 1, "abs": 1,
    "sin": 1, "cos": 1, "tanh": 1, "sinh": 1, "cosh": 1, "atan": 1,
    "erf": 1, "erfc": 1, "sigmoid": 1, "softplus": 1, "relu": 1,
    "normal_cdf": 1, "sign": 1, "step": 1, "max": 2, "min": 2,
}

_MAX_LENGTH = 2000
_MAX_INT_EXPONENT = 64
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


def _fail(text: str, why: str) -> ActivationError:
    return ActivationError(
        f"activation expression {text!r} is not allowed: {why}. Expressions may use the "
        f"variable 'x', numbers, pi, e, + - * / **, and the functions "
        f"{', '.join(sorted(FUNCTIONS))}."
    )


def _check(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.Expression):
        _check(node.body, text)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINOPS):
            raise _fail(text, f"operator {type(node.op).__name__} is not supported")
        if isinstance(node.op, ast.Pow) and not _mentions_x(node.right):
            # A constant exponent must be a plain number (so that SymPy never evaluates
            # something like 2**10**10 exactly), and a small one.
            value = _literal_value(node.right)
            if value is None or abs(value) > _MAX_INT_EXPONENT:
                raise _fail(text, f"constant exponents are limited to number literals with "
                                  f"|n| <= {_MAX_INT_EXPONENT} (got {ast.unparse(node.right)})")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise _fail(text, f"operator {type(node.op).__name__} is not supported")
        _check(node.operand, text)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _fail(text, f"literal {node.value!r} is not a real number")
        if not math.isfinite(float(node.value)) or abs(node.value) > 1e300:
            raise _fail(text, f"number literal {node.value!r} is not a finite double")
    elif isinstance(node, ast.Name):
        if node.id != VARIABLE and node.id not in CONSTANTS:
            hint = difflib.get_close_matches(node.id, [VARIABLE, *CONSTANTS, *FUNCTIONS], n=3)
            extra = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            raise _fail(text, f"unknown name {node.id!r}{extra}; the variable must be called 'x'")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            hint = difflib.get_close_matches(name, list(FUNCTIONS), n=3)
            extra = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            raise _fail(text, f"function {name!r} is not in the whitelist{extra}")
        if node.keywords or len(node.args) != FUNCTIONS[node.func.id]:
            raise _fail(
                text, f"{node.func.id}() takes {FUNCTIONS[node.func.id]} positional argument(s)"
            )
        for arg in node.args:
            _check(arg, text)
    else:
        raise _fail(text, f"syntax element {type(node).__name__} is not supported")


def _mentions_x(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == VARIABLE for n in ast.walk(node))


def _literal_value(node: ast.AST) -> float | None:
    """Value of a number literal, optionally signed or a ratio of literals (``1/3``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal_value(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        num, den = _literal_value(node.left), _literal_value(node.right)
        if num is not None and den:
            return num / den
    return None


def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str):
        raise ActivationError(f"activation expression must be a string, got {type(text).__name__}")
    if len(text) > _MAX_LENGTH:
        raise _fail(text[:40] + "...", f"longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        _check(tree, text)
        ast.unparse(tree)  # the canonical form must be printable too
    except SyntaxError as exc:
        raise _fail(text, f"syntax error ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise _fail(text, "nested too deeply") from None
    return tree


def canonical_text(text: str) -> str:
    """Validate ``text`` and return its canonical spelling (no SymPy involved).

    >>> canonical_text("x *  tanh( x )")
    'x * tanh(x)'
    """
    tree = _parse(text)
    if not _mentions_x(tree):
        raise _fail(text, "it does not depend on the variable 'x'")
    try:
        return ast.unparse(tree)
    except RecursionError:
        raise _fail(text, "nested too deeply") from None


def to_sympy(text: str, x):
    """Build the SymPy expression of a (whitelisted) activation string in symbol ``x``."""
    import sympy as sp
    from sympy.codegen.cfunctions import expm1, log1p

    from .functions import Sigmoid, Softplus, normal_cdf, relu, step

    funcs = {
        "exp": sp.exp, "expm1": expm1, "log": sp.log, "log1p": log1p, "sqrt": sp.sqrt,
        "abs": sp.Abs, "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh, "sinh": sp.sinh,
        "cosh": sp.cosh, "atan": sp.atan, "erf": sp.erf, "erfc": sp.erfc,
        "sigmoid": Sigmoid, "softplus": Softplus, "relu": relu, "normal_cdf": normal_cdf,
        "sign": sp.sign, "step": step,
        "max": lambda a, b: sp.Piecewise((a, a >= b), (b, True)),
        "min": lambda a, b: sp.Piecewise((a, a <= b), (b, True)),
    }
    names = {VARIABLE: x, "pi": sp.pi, "e": sp.E}

    def build(node):
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.BinOp):
            left, right = build(node.left), build(node.right)
            op = type(node.op)
            if op is ast.Add:
                return left + right
            if op is ast.Sub:
                return left - right
            if op is ast.Mult:
                return left * right
            if op is ast.Div:
                return left / right
            return left**right
        if isinstance(node, ast.UnaryOp):
            value = build(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            # Decimal literals become exact rationals so that "0.1*x" means 1/10 exactly.
            if isinstance(node.value, int):
                return sp.Integer(node.value)
            return sp.Rational(repr(node.value))
        if isinstance(node, ast.Name):
            return names[node.id]
        if isinstance(node, ast.Call):
            return funcs[node.func.id](*[build(a) for a in node.args])
        raise AssertionError("unreachable: the tree was checked")  # pragma: no cover

    try:
        return build(_parse(text))
    except RecursionError:
        raise _fail(text, "nested too deeply") from None

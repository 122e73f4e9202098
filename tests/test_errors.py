"""Every bad input raises a named symflow error whose message says what to do.

Specs, data and parameters are validated before anything is compiled, so most
tests here are fast.  One small Net is compiled (module fixture) to check the
parameter validation of its methods; the compiler failures compile nothing
that succeeds.  Every test uses a private SYMFLOW_CACHE_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symflow
from symflow import (
    MLP,
    ActivationError,
    CompilationError,
    CompilerNotFoundError,
    DataError,
    Net,
    ParameterError,
    SpecError,
    SymflowError,
)
from symflow.symbolic.parse import to_sympy

# Subprocesses import the same symflow as this process (checkout or installed wheel).
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(symflow.__file__)))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(tmp_path / "cache"))


def check(exc_type, fn, *fragments):
    """``fn()`` raises exactly ``exc_type`` (a SymflowError) mentioning every fragment."""
    with pytest.raises(SymflowError) as info:
        fn()
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message: {message}"
    return message


ARCH = MLP(2, [(3, "tanh", True), (1, "identity", True)])  # P = 13
ARCH2 = MLP(2, [(3, "tanh", True), (2, "identity", True)])
SOFTMAX = MLP(2, [(3, "tanh", True), (3, "softmax", True)])
DEEP = MLP(2, [(3, "tanh", True), (4, "tanh", False), (1, "identity", True)])


@pytest.fixture(scope="module")
def data():
    X = np.random.default_rng(0).normal(size=(10, 2))
    return X, np.sin(X[:, 0])


@pytest.fixture(scope="module")
def net(tmp_path_factory, data):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMFLOW_CACHE_DIR", str(tmp_path_factory.mktemp("errors-cache")))
        return Net(ARCH, *data)


# ---------------------------------------------------------------------------------------
# the hierarchy
# ---------------------------------------------------------------------------------------
def test_error_hierarchy():
    for cls in (SpecError, ActivationError, DataError, ParameterError, CompilationError,
                CompilerNotFoundError, symflow.EmitError):
        assert issubclass(cls, SymflowError)
    assert issubclass(ActivationError, SpecError)
    assert issubclass(CompilerNotFoundError, CompilationError)
    # input errors are also ValueErrors, so generic code catching ValueError works
    for cls in (SpecError, DataError, ParameterError):
        assert issubclass(cls, ValueError)


# ---------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [0, -1, -10, True, False, 2.0, 2.5, "3", None])
def test_bad_width(width):
    check(SpecError, lambda: MLP(2, [(width, "tanh", True)]), "width of layer 1",
          "positive integer")


@pytest.mark.parametrize("din", [0, -2, True, 1.0, "2", None])
def test_bad_input_dimension(din):
    check(SpecError, lambda: MLP(din, [(1, "identity", True)]), "din", "positive integer")


def test_bad_width_names_the_layer():
    check(SpecError, lambda: MLP(2, [(3, "tanh", True), (0, "identity", True)]),
          "width of layer 2")


@pytest.mark.parametrize("bias", [1, 0, "yes", "True", None, 1.0])
def test_bias_flag_not_bool(bias):
    check(SpecError, lambda: MLP(2, [(3, "tanh", bias)]), "bias flag of layer 1",
          "True or False")


@pytest.mark.parametrize("layers", [[], "3 tanh", 3, None])
def test_bad_layer_list(layers):
    check(SpecError, lambda: MLP(2, layers), "layer")


@pytest.mark.parametrize("entry", [(3,), (3, "tanh", True, 1), 3, "tanh", {"width": 3}])
def test_bad_layer_entry(entry):
    check(SpecError, lambda: MLP(2, [entry]), "layer 1", "(width, activation")


def test_per_neuron_count_mismatch():
    check(SpecError, lambda: MLP(2, [(3, ("tanh", "relu"), True)]), "width 3",
          "2 per-neuron", "one activation per neuron")


def test_softmax_not_last_layer():
    check(SpecError, lambda: MLP(2, [(3, "softmax", True), (1, "identity", True)]),
          "softmax", "last layer", "layer 1 of 2")


def test_softmax_width_one():
    check(SpecError, lambda: MLP(2, [(3, "tanh", True), (1, "softmax", True)]),
          "at least 2 classes", "(2, 'softmax', True)")


@pytest.mark.parametrize("acts", [("softmax", "softmax", "softmax"), ("softmax", "tanh", "relu")])
def test_softmax_per_neuron(acts):
    check(SpecError, lambda: MLP(2, [(3, acts, True)]), "per-neuron",
          "(n_classes, 'softmax', True)")


@pytest.mark.parametrize(
    "name, near",
    [("tanhh", "'tanh'"), ("sofplus", "'softplus'"), ("sigmod", "'sigmoid'"),
     ("Softplus", "'softplus'"), ("softmx", "'softmax'"), ("idenity", "'identity'")],
)
def test_unknown_activation_suggests_near_names(name, near):
    msg = check(ActivationError, lambda: MLP(2, [(3, name, True)]), repr(name), "layer 1",
                "Did you mean", near)
    assert "Known names" in msg and "x*tanh(x)" in msg


def test_unknown_activation_in_a_neuron_names_the_neuron():
    check(ActivationError, lambda: MLP(2, [(2, ("relu", "tahn"), True)]),
          "layer 1, neuron 1", "'tanh'")


def test_unknown_activation_suggestion_ignores_case():
    # 'ReLU', 'GELU', 'Tanh' are the PyTorch spellings users will type.
    check(ActivationError, lambda: MLP(2, [(3, "ReLU", True)]), "'relu'")
    check(ActivationError, lambda: MLP(2, [(3, "GELU", True)]), "'gelu'")


@pytest.mark.parametrize("act", [None, 3, 1.5, object(), b"tanh"])
def test_activation_of_wrong_type(act):
    check(ActivationError, lambda: MLP(2, [(3, act, True)]), "name, an expression string")


# ---------------------------------------------------------------------------------------
# activation expressions: whitelisted, never evaluated
# ---------------------------------------------------------------------------------------
def test_import_os_system_is_rejected_and_not_run(tmp_path):
    target = tmp_path / "pwned"
    text = f"__import__('os').system('touch {target}')"
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "not allowed", "whitelist")
    check(ActivationError, lambda: MLP.from_string(f"1 | 2 {text} | 1"), "not allowed")
    x = pytest.importorskip("sympy").Symbol("x")
    check(ActivationError, lambda: to_sympy(text, x), "not allowed")
    assert not target.exists()


def test_classic_payload_path_not_created():
    # the literal payload of the issue; /tmp/pwned must not appear because of us
    existed = os.path.exists("/tmp/pwned")
    check(ActivationError,
          lambda: MLP(1, [(2, "__import__('os').system('touch /tmp/pwned')", True)]))
    assert os.path.exists("/tmp/pwned") == existed


@pytest.mark.parametrize(
    "text, why",
    [
        ("x.real", "Attribute"),
        ("x.__class__.__bases__", "Attribute"),
        ("().__class__", "Attribute"),
        ("(lambda: x)()", "whitelist"),
        ("(lambda y: y)(x)", "whitelist"),
        ("[x for x in range(3)][0]", "not supported"),
        ("sum(x for _ in range(9**9))", "whitelist"),
        ("{x: 1}", "not supported"),
        ("x[0]", "not supported"),
        ("x if x else 1", "not supported"),
        ("x < 1", "not supported"),
        ("x and x", "not supported"),
        ("x % 2", "Mod"),
        ("x // 2", "FloorDiv"),
        ("x @ x", "MatMult"),
        ("~x", "Invert"),
        ("(y := x)", "not supported"),
        ("f'{x}'", "not supported"),
        ("'x'", "not a real number"),
        ("1j*x", "not a real number"),
        ("True*x", "not a real number"),
        ("eval('x')", "whitelist"),
        ("exec('import os')", "whitelist"),
        ("getattr(x, 'real')", "whitelist"),
        ("open('/etc/passwd')", "whitelist"),
        ("foo(x)", "whitelist"),
        ("exp(x, x)", "argument"),
        ("max(x)", "argument"),
        ("exp(x=x)", "argument"),
        ("import os", "syntax error"),
        ("x = 1", "syntax error"),
        ("x; x", "syntax error"),
        ("x +", "syntax error"),
        ("", "syntax error"),
        ("2*y", "unknown name 'y'"),
        ("X + 1", "unknown name 'X'"),
        ("__builtins__ * x", "unknown name '__builtins__'"),
        ("x*tanhh", "unknown name 'tanhh'"),
        ("x" + "+x" * 1200, "longer than 2000"),
    ],
)
def test_unsafe_or_unsupported_expression_rejected(text, why):
    msg = check(ActivationError, lambda: MLP(1, [(2, text, True)]), "not allowed", why)
    assert "Expressions may use the variable 'x'" in msg


@pytest.mark.parametrize("text, near", [("tanhh(x)", "'tanh'"), ("sofplus(x)", "'softplus'"),
                                        ("x*sigmod(x)", "'sigmoid'")])
def test_unknown_function_suggests_near_names(text, near):
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "whitelist", near)


@pytest.mark.parametrize("name", ["y", "X", "pi", "e", "__builtins__", "os", "eval"])
def test_bare_unknown_identifier(name):
    # a bare identifier is read as an activation name
    check(ActivationError, lambda: MLP(1, [(2, name, True)]), f"unknown activation {name!r}",
          "Known names")


@pytest.mark.parametrize("text", ["2", "2*pi", "exp(1) + e", "-3.5", "sin(pi/2)"])
def test_expression_without_x(text):
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "does not depend on the variable 'x'")


@pytest.mark.parametrize("text", ["x**100", "x**-65", "x**1e10", "x**(2**100)", "x**1e400"])
def test_huge_literal_exponent(text):
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "exponents are limited")


@pytest.mark.parametrize(
    "text",
    [
        "x**10**10",  # right-associative: x**(10**10)
        "x**(10**10)",
        "x*2**10**10",  # SymPy would evaluate 2**(10**10) exactly when deriving: hangs
        "x + 9**9**9",
    ],
)
def test_huge_computed_exponent(text):
    # Only the spec is built here (no SymPy): the check must be on the text.
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "not allowed", "exponent")


@pytest.mark.parametrize("text", ["1e309*x", "x + 1e999", "x*-1e400"])
def test_non_finite_literal(text):
    # 1e309 parses to float inf; building the Net later dies with a bare TypeError
    check(ActivationError, lambda: MLP(1, [(2, text, True)]), "not allowed")


NESTED = {
    "unary-minus-600": "-" * 600 + "x",
    "sum-of-900": "x" + "+x" * 900,
    "difference-of-400": "x" + "-x" * 400,
    "product-of-600": "x" + "*x" * 600,
    "sin-cos-300": "sin(cos(" * 150 + "x" + "))" * 150,
}


@pytest.mark.parametrize("text", NESTED.values(), ids=NESTED.keys())
def test_deeply_nested_expression(text):
    # within the 2000 character limit, but deeper than the recursion limit allows
    assert len(text) <= 2000
    escaped = False
    try:
        check(ActivationError, lambda: MLP(1, [(2, text, True)]), "not allowed")
    except RecursionError:
        escaped = True
    # fail outside the handler: a 1000-frame traceback takes pytest minutes to format
    assert not escaped, "RecursionError escaped instead of ActivationError('nested too deeply')"


def test_sympy_activation_with_two_symbols():
    sp = pytest.importorskip("sympy")
    x, y = sp.symbols("x y")
    check(ActivationError, lambda: MLP(1, [(2, x * y, True)]), "exactly one symbol", "['x', 'y']")
    check(ActivationError, lambda: MLP(1, [(2, sp.Integer(3), True)]), "exactly one symbol")


# ---------------------------------------------------------------------------------------
# the text form
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("3", "needs the input dimension and at least one layer"),
        ("a | 3 relu | 1", "must start with the input dimension"),
        ("3 | 3.5 relu | 1", "must start with its width"),
        ("3 | relu | 1", "must start with its width"),
        ("3 | 3 relu | | 1", "empty layer"),
        ("3 | 0 relu | 1", "positive integer"),
        ("0 | 3 relu | 1", "positive integer"),
        ("3 | 3 relu;tanh | 1", "one activation per neuron"),
        ("3 | 3 softmax | 1", "last layer"),
    ],
)
def test_from_string_errors(text, fragment):
    with pytest.raises(SpecError, match=None) as info:
        MLP.from_string(text)
    assert fragment in str(info.value)


def test_from_string_bad_activation_is_activation_error():
    check(ActivationError, lambda: MLP.from_string("2 | 3 tanhh | 1"), "'tanh'")


@pytest.mark.parametrize("text", [5, None, ["2", "3 relu"]])
def test_from_string_not_a_string(text):
    check(SpecError, lambda: MLP.from_string(text), "string")


# ---------------------------------------------------------------------------------------
# data (validated before anything is compiled)
# ---------------------------------------------------------------------------------------
def test_arch_not_an_mlp(data):
    check(SpecError, lambda: Net("2 | 3 tanh | 1", *data), "MLP", "symflow.MLP(")


def test_X_one_dimensional(data):
    X, y = data
    check(DataError, lambda: Net(ARCH, X[:, 0], y), "2-D", "(10,)", "reshape(-1, 1)")


@pytest.mark.parametrize("cols", [1, 3])
def test_X_wrong_column_count(cols):
    X = np.ones((10, cols))
    check(DataError, lambda: Net(ARCH, X, np.ones(10)), f"{cols} columns", "needs 2",
          "one sample per row")


def test_X_three_dimensional():
    check(DataError, lambda: Net(ARCH, np.ones((10, 2, 1)), np.ones(10)), "2-D", "(10, 2, 1)")


@pytest.mark.parametrize("dtype", [complex, str, object, bool])
def test_X_wrong_dtype(dtype, data):
    X, y = data
    check(DataError, lambda: Net(ARCH, X.astype(dtype), y), "X must hold real numbers")


def test_Y_wrong_rows(data):
    X, y = data
    check(DataError, lambda: Net(ARCH, X, y[:7]), "10 samples", "Y has 7")
    check(DataError, lambda: Net(ARCH, X, np.ones((12, 1))), "10 samples", "Y has 12")


def test_Y_wrong_columns(data):
    X, _ = data
    check(DataError, lambda: Net(ARCH, X, np.ones((10, 2))), "Y has 2 columns", "needs 1")
    check(DataError, lambda: Net(ARCH2, X, np.ones((10, 3))), "Y has 3 columns", "needs 2")


def test_Y_one_dimensional_for_two_outputs(data):
    X, y = data
    check(DataError, lambda: Net(ARCH2, X, y), "2-D", "(N, 2)")


@pytest.mark.parametrize("which", ["X", "Y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_names_row_and_column(which, bad, data):
    X, y = data[0].copy(), np.column_stack([data[1], data[1]])
    arr = X if which == "X" else y
    arr[6, 1] = bad
    arr[8, 0] = bad
    check(DataError, lambda: Net(ARCH2, X, y), f"{which} contains {bad}", "row 6, column 1",
          "2 non-finite entries", "remove or impute")


def test_empty_data():
    check(DataError, lambda: Net(ARCH, np.zeros((0, 2)), np.zeros(0)), "empty",
          "at least one sample")


@pytest.mark.parametrize("w, fragment", [(np.ones(9), "shape (10,)"),
                                         (np.ones((10, 1)), "shape (10,)"),
                                         (np.ones(10, dtype=bool), "real numbers"),
                                         (np.array(["1"] * 10), "real numbers")])
def test_weights_wrong_shape_or_type(w, fragment, data):
    check(DataError, lambda: Net(ARCH, *data, weights=w), "sample weights", fragment)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_weights_negative_or_non_finite(bad, data):
    w = np.ones(10)
    w[4] = bad
    check(DataError, lambda: Net(ARCH, *data, weights=w), "sample weights",
          "finite and non-negative")


def test_labels_out_of_range(data):
    X, _ = data
    labels = np.array([0, 1, 2, 0, 1, 3, 0, 1, 2, 0])
    check(DataError, lambda: Net(SOFTMAX, X, labels), "label 3 at sample 5", "3 classes",
          "0..2")
    check(DataError, lambda: Net(SOFTMAX, X, labels - 1), "label -1 at sample 0")


@pytest.mark.parametrize("dtype", [float, bool, str])
def test_labels_not_integer(dtype, data):
    X, _ = data
    labels = (np.arange(10) % 3).astype(dtype)
    check(DataError, lambda: Net(SOFTMAX, X, labels), "integer class labels", "astype(int)")


@pytest.mark.parametrize("shape", [(10, 1), (9,), (11,), (10, 3)])
def test_labels_wrong_shape(shape, data):
    X, _ = data
    labels = np.zeros(shape, dtype=int)
    check(DataError, lambda: Net(SOFTMAX, X, labels), "shape (10,)", str(shape))


# ---------------------------------------------------------------------------------------
# regularisers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "merge, fragment",
    [
        ((0, 0, 1, 1.0), "hidden layer number in 1..2"),
        ((3, 0, 1, 1.0), "hidden layer number in 1..2"),  # the output layer
        ((-1, 0, 1, 1.0), "hidden layer number"),
        ((1.0, 0, 1, 1.0), "hidden layer number"),
        ((True, 0, 1, 1.0), "hidden layer number"),  # bool is not a layer number
        ((1, 0, 3, 1.0), "indices in 0..2 of layer 1"),
        ((2, 4, 0, 1.0), "indices in 0..3 of layer 2"),
        ((1, -1, 0, 1.0), "indices in 0..2"),
        ((1, 0.0, 1, 1.0), "indices in 0..2"),
        ((1, 1, 1, 1.0), "i != j"),
        ((1, 0, 1, np.nan), "finite number"),
        ((1, 0, 1, np.inf), "finite number"),
        ((1, 0, 1, "1"), "finite number"),
        ((1, 0, 1), "(layer, i, j, lam)"),
        ("1 0 1 1.0", "(layer, i, j, lam)"),
    ],
)
def test_merge_bad(merge, fragment, data):
    check(ParameterError, lambda: Net(DEEP, *data, merge=merge), fragment)


@pytest.mark.parametrize("maxnorm", [np.nan, np.inf, -np.inf, True, [1.0], "1.0"])
def test_maxnorm_bad(maxnorm, data):
    check(ParameterError, lambda: Net(ARCH, *data, maxnorm=maxnorm), "maxnorm",
          "finite number")


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 12, 14, 41])
def test_wrong_parameter_length_spec(n):
    check(ParameterError, lambda: ARCH.check_params(np.zeros(n)), f"({n},)", "13 parameters",
          "random_params()")
    check(ParameterError, lambda: ARCH.unflatten(np.zeros(n)), "13 parameters")


@pytest.mark.parametrize("method", ["loss", "gradient", "hessian", "loss_and_gradient",
                                    "hessian_spectrum", "predict"])
def test_wrong_parameter_length_net(net, method):
    call = getattr(net, method)
    check(ParameterError, lambda: call(np.zeros(12)), "(12,)", "13 parameters")
    check(ParameterError, lambda: call(np.zeros(14)), "(14,)", "13 parameters")


@pytest.mark.parametrize("shape", [(1, 13), (13, 1)])
def test_two_dimensional_parameters(net, shape):
    msg = check(ParameterError, lambda: net.loss(np.zeros(shape)), str(shape))
    # same size, wrong shape: the message should say that p must be 1-D
    assert "1-D" in msg or "ravel" in msg, msg


@pytest.mark.parametrize("bad, index, name", [(np.nan, 5, "W1_2_1"), (np.inf, 12, "b2_0"),
                                              (-np.inf, 0, "W1_0_0")])
@pytest.mark.parametrize("method", ["loss", "gradient", "hessian"])
def test_non_finite_parameters(net, method, bad, index, name):
    p = np.zeros(13)
    p[index] = bad
    check(ParameterError, lambda: getattr(net, method)(p), f"parameter {index} ({name})",
          str(bad), "finite")


@pytest.mark.parametrize("p", [np.zeros(13, complex), np.array(["0"] * 13),
                               np.array([None] * 13), np.zeros(13, bool)])
def test_parameters_of_wrong_dtype(net, p):
    check(ParameterError, lambda: net.loss(p), "real float64 vector")


def test_flatten_errors():
    W1, b1, W2, b2 = np.zeros((3, 2)), np.zeros(3), np.zeros((1, 3)), np.zeros(1)
    check(ParameterError, lambda: ARCH.flatten([(W1, b1)]), "one (W, b) pair per layer")
    check(ParameterError, lambda: ARCH.flatten([(W1.T, b1), (W2, b2)]), "layer 1", "(2, 3)",
          "expected (3, 2)")
    check(ParameterError, lambda: ARCH.flatten([(W1, b1[:2]), (W2, b2)]), "b has shape (2,)")
    check(ParameterError, lambda: ARCH.flatten([(W1, None), (W2, b2)]), "has a bias")
    nobias = MLP(2, [(3, "tanh", False)])
    check(ParameterError, lambda: nobias.flatten([(W1, b1)]), "no bias", "None")
    bad = W1.copy()
    bad[1, 0] = np.nan
    check(ParameterError, lambda: ARCH.flatten([(bad, b1), (W2, b2)]), "W1_1_0")


def test_unknown_init_scheme():
    check(SpecError, lambda: ARCH.random_params(scheme="he_normal"), "'glorot_normal'",
          "'glorot_uniform'")


def test_subset_bad_indices(net):
    check(DataError, lambda: net.subset([]), "non-empty")
    check(DataError, lambda: net.subset([0.5]), "integer")
    check(DataError, lambda: net.subset([3, 100]), "100")


# ---------------------------------------------------------------------------------------
# compilers
# ---------------------------------------------------------------------------------------
TINY = "symflow.MLP(1, [(2, 'tanh', True), (1, 'identity', False)])"


def run_python(code: str, env_extra: dict, cwd, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    env["PYTHONPATH"] = PKG_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


REPORT_ERROR = f"""
import json, numpy as np, symflow
arch = {TINY}
try:
    symflow.Net(arch, np.zeros((3, 1)), np.zeros(3))
except Exception as exc:
    print(json.dumps({{"type": type(exc).__name__,
                      "mro": [c.__name__ for c in type(exc).__mro__],
                      "message": str(exc)}}))
else:
    print(json.dumps({{"type": None}}))
"""


def test_missing_compiler_subprocess(tmp_path):
    cache = tmp_path / "fresh-cache"
    proc = run_python(REPORT_ERROR, {"CC": "/nonexistent/cc", "SYMFLOW_CACHE_DIR": str(cache)},
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["type"] == "CompilerNotFoundError", out
    assert "CompilationError" in out["mro"] and "SymflowError" in out["mro"]
    msg = out["message"]
    assert "/nonexistent/cc" in msg
    assert "install a C compiler" in msg and "apt-get install gcc" in msg and "CC" in msg
    # nothing half-built was left behind
    leftovers = [p.name for p in cache.iterdir()] if cache.exists() else []
    assert not any(n.startswith((".tmp-", "_sf_")) for n in leftovers), leftovers


def test_missing_compiler_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    check(CompilerNotFoundError, lambda: Net(MLP(1, [(1, "identity", True)]), np.zeros((2, 1)),
                                             np.zeros(2)), "no-such-cc", "apt-get install gcc")


def _fake_cc(tmp_path, marker):
    script = tmp_path / "fakecc"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "fakecc 1.0"; exit 0; fi\n'
        f'echo "fakecc: error: {marker}" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return script


def test_failing_compiler_reports_its_message_and_leaves_a_log(tmp_path, monkeypatch):
    marker = "simulated failure 4711 in kernels"
    monkeypatch.setenv("CC", str(_fake_cc(tmp_path, marker)))
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(cache))
    msg = check(CompilationError,
                lambda: Net(MLP(1, [(2, "tanh", True), (1, "identity", True)]),
                            np.zeros((2, 1)), np.zeros(2)),
                marker, "exit code 1", "full log:")
    logs = list((cache / "failed").glob("*.log"))
    assert len(logs) == 1, logs
    assert str(logs[0]) in msg
    log = logs[0].read_text()
    assert marker in log and "fakecc" in log
    # no half-built entry and no temporary directory survive a failure
    assert sorted(p.name for p in cache.iterdir()) == ["failed"]


def test_compiler_false_raises_compilation_error(tmp_path, monkeypatch):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` executable")
    monkeypatch.setenv("CC", false)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(cache))
    check(CompilationError, lambda: Net(MLP(1, [(1, "tanh", True)]), np.zeros((2, 1)),
                                        np.zeros(2)), "failed with exit code 1", "full log:")
    assert len(list((cache / "failed").glob("*.log"))) == 1
    assert not [p for p in cache.iterdir() if p.name != "failed"]


def test_bad_cflags_compiler_message_is_shown(tmp_path, monkeypatch):
    # a real compiler rejecting a flag: its own diagnostic must reach the user
    monkeypatch.setenv("SYMFLOW_CFLAGS", "-fno-such-option-symflow")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(cache))
    check(CompilationError, lambda: Net(MLP(1, [(1, "tanh", True)]), np.zeros((2, 1)),
                                        np.zeros(2)), "-fno-such-option-symflow")
    (log,) = (cache / "failed").glob("*.log")
    assert "-fno-such-option-symflow" in log.read_text()


def test_negative_regulariser_strengths_are_rejected():
    arch = symflow.MLP(1, [(2, "tanh", True), (1, "identity", True)])
    X, Y = np.zeros((3, 1)), np.zeros(3)
    with pytest.raises(symflow.ParameterError, match="unbounded below"):
        symflow.Net(arch, X, Y, merge=(1, 0, 1, -1.0))
    with pytest.raises(symflow.ParameterError, match=">= 0"):
        symflow.Net(arch, X, Y, maxnorm=-0.5)

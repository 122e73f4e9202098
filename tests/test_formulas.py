"""symflow.formulas: the expressions are right (checked numerically, not by re-deriving)."""

import math

import numpy as np
import pytest

import symflow

sp = pytest.importorskip("sympy")


def _numeric(expr, **values):
    return float(expr.evalf(30, subs={sp.Symbol(k, real=True): v for k, v in values.items()}))


@pytest.mark.parametrize("x", [-3.0, -0.4, 0.7, 2.5])
def test_activation_formulas_match_central_differences(x):
    # f' and f'' compared with 4th-order central differences of the value at h = 1e-3
    # (truncation ~h^4 f^(5) ~ 1e-12, round-off negligible at 30-digit evaluation).
    h = 1e-3
    for name in ("softplus", "g", "gelu", "silu", "tanh", "x*tanh(x)"):
        f = symflow.formulas(name)
        keys = list(f)
        val = [_numeric(f[keys[0]], x=x + k * h) for k in (-2, -1, 0, 1, 2)]
        d1 = (val[0] - 8 * val[1] + 8 * val[3] - val[4]) / (12 * h)
        d2 = (-val[0] + 16 * val[1] - 30 * val[2] + 16 * val[3] - val[4]) / (12 * h * h)
        assert _numeric(f[keys[1]], x=x) == pytest.approx(d1, rel=1e-9, abs=1e-12), name
        assert _numeric(f[keys[2]], x=x) == pytest.approx(d2, rel=1e-6, abs=1e-9), name


def test_named_values_are_the_documented_functions():
    x = 0.37
    f = {n: _numeric(list(symflow.formulas(n).values())[0], x=x)
         for n in ("softplus", "sigmoid", "erf", "normal_cdf", "gelu", "square", "cube", "g")}
    assert f["softplus"] == pytest.approx(math.log1p(math.exp(x)), rel=1e-15)
    assert f["sigmoid"] == pytest.approx(1 / (1 + math.exp(-x)), rel=1e-15)
    assert f["erf"] == pytest.approx(math.erf(x / math.sqrt(2)), rel=1e-15)
    assert f["normal_cdf"] == pytest.approx(0.5 * math.erfc(-x / math.sqrt(2)), rel=1e-15)
    assert f["gelu"] == pytest.approx(x * 0.5 * math.erfc(-x / math.sqrt(2)), rel=1e-15)
    assert f["square"] == pytest.approx(x * x / 2, rel=1e-15)
    assert f["cube"] == pytest.approx(x**3, rel=1e-15)
    assert f["g"] == pytest.approx(1 / (1 + math.exp(-4 * x)) + math.log1p(math.exp(x)),
                                   rel=1e-15)


def test_network_expression_matches_compiled_net():
    arch = symflow.MLP(2, [(3, "tanh", True), (2, "sigmoid", False)])
    f = symflow.formulas(arch)
    assert {"f_0", "f_1", "loss"} <= set(f)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(1, 2)), rng.normal(size=(1, 2))
    p = arch.random_params(seed=2)
    values = dict(zip(arch.parameter_names(), p))
    values.update(x_0=X[0, 0], x_1=X[0, 1], y_0=Y[0, 0], y_1=Y[0, 1])
    net = symflow.Net(arch, X, Y)
    assert _numeric(f["loss"], **values) == pytest.approx(net.loss(p), rel=1e-13)
    assert _numeric(f["f_1"], **values) == pytest.approx(net.predict(p)[0, 1], rel=1e-13)


def test_softmax_network_expression_is_cross_entropy():
    arch = symflow.MLP(1, [(3, "softmax", True)])
    loss = symflow.formulas(arch)["loss"]
    p = np.array([0.3, -1.2, 0.8, 0.1, 0.0, -0.5])
    z = p[:3] * 0.9 + p[3:]
    values = dict(zip(arch.parameter_names(), p), x_0=0.9)
    for label in range(3):
        expect = np.log(np.exp(z).sum()) - z[label]
        got = float(loss.evalf(30, subs={**{sp.Symbol(k, real=True): v for k, v in values.items()},
                                          sp.Symbol("y", integer=True, nonnegative=True): label}))
        assert got == pytest.approx(expect, rel=1e-14)


def test_large_networks_skip_or_refuse_whole_expressions():
    arch = symflow.MLP(2, [(30, "tanh", True), (1, "identity", True)])
    assert "loss" not in symflow.formulas(arch)
    with pytest.raises(symflow.SpecError, match="max_params"):
        symflow.formulas(arch, network=True)


def test_format_text_and_latex():
    f = symflow.formulas("softplus")
    assert "softplus'(x) = Sigmoid(x)" in symflow.format_formulas(f)
    assert r"\sigma\left(x\right)" in symflow.format_formulas(f, latex=True)

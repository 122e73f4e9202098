"""Compiled activations, first and second derivatives against mpmath at 50 digits.

Each activation is written here a second time with mpmath (independently of
symflow's SymPy machinery); its derivatives come from ``mpmath.diff`` (numerical
differentiation at high precision) of that function, never from SymPy.  Every
compiled value (``Net.activation`` -> the C kernel) must be accurate to about
1e-13 relative wherever the true value is a normal double, tiny in absolute terms
where it underflows, inf exactly where the true value overflows, and never NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import symflow

mpmath = pytest.importorskip("mpmath")
sp = pytest.importorskip("sympy")
mp = mpmath.mp

DPS = 50
SELU_ALPHA = "1.6732632423543772848170429916717"
SELU_LAMBDA = "1.0507009873554804934193349852946"

# The grid of the brief: 0, tiny, moderate, and tails far enough out that naive
# formulas overflow (exp(710) = inf) or cancel (1 - tanh(x)^2 == 0 for x > 19).
MAGNITUDES = (0.0, 1e-8, 0.5, 1.0, 5.0, 20.0, 30.0, 50.0, 100.0, 300.0, 700.0, 1000.0)
GRID = np.array(sorted({s * m for m in MAGNITUDES for s in (1.0, -1.0)}))

#: Relative tolerance where the true value is a normal double.  A careful double
#: implementation is good to a few ulp (~1e-15); 1e-13 leaves room for libm's
#: erf/erfc/exp and short products of such values, and still catches any lost digit
#: from cancellation (e.g. 1 - tanh^2 in the tails, which is wrong by 100 %).
RTOL = 1e-13
#: Where the input must be scaled (x/sqrt 2 inside erf/erfc, 4x inside g) the one-ulp
#: rounding of the scaled argument is amplified by the condition number
#: kappa = |x f'(x)/f(x)| of the function being evaluated; allow 4 ulp of that on top.
COND_ULPS = 4 * np.finfo(float).eps
#: |true value| below this counts as underflow: then only an absolute error is checked.
TINY = 1e-300


# ---------------------------------------------------------------------------------------
# mpmath references.  Each entry maps the evaluation point x0 to the smooth branch
# valid at x0 (for kinked functions the branch symflow uses at the kink itself), so
# mpmath.diff never differentiates across a kink.
# ---------------------------------------------------------------------------------------
def _smooth(fn):
    return lambda x0: fn


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _softplus(x):
    return mpmath.log1p(mpmath.exp(x))


def _phi_cdf(x):
    return mpmath.ncdf(x)


def _selu_branch(x0):
    lam, alpha = mpmath.mpf(SELU_LAMBDA), mpmath.mpf(SELU_ALPHA)
    if x0 > 0:
        return lambda x: lam * x
    return lambda x: lam * alpha * mpmath.expm1(x)


def _constant(c):
    return lambda x: mpmath.mpf(c) + 0 * x


REFERENCES = {
    "identity": _smooth(lambda x: x),
    # relu, step, sign: the derivative at the kink is 0 (the PyTorch convention,
    # documented in symflow.symbolic.activations), and step(0) = 0, sign(0) = 0.
    "relu": lambda x0: (lambda x: x) if x0 > 0 else _constant(0),
    "softplus": _smooth(_softplus),
    "sigmoid": _smooth(_sigmoid),
    "tanh": _smooth(mpmath.tanh),
    "erf": _smooth(lambda x: mpmath.erf(x / mpmath.sqrt(2))),
    "normal_cdf": _smooth(_phi_cdf),
    "gelu": _smooth(lambda x: x * _phi_cdf(x)),
    "silu": _smooth(lambda x: x * _sigmoid(x)),
    # selu: at 0 symflow takes the x <= 0 branch (as PyTorch's elu backward does).
    "selu": _selu_branch,
    "square": _smooth(lambda x: x**2 / 2),
    "cube": _smooth(lambda x: x**3),
    "g": _smooth(lambda x: _sigmoid(4 * x) + _softplus(x)),
    "exp": _smooth(mpmath.exp),
    "sign": lambda x0: _constant(1 if x0 > 0 else -1 if x0 < 0 else 0),
    "step": lambda x0: _constant(1 if x0 > 0 else 0),
    # user expressions: the library must rewrite the first two into its safe softplus
    # and sigmoid, so they have to be exactly as accurate as the named ones
    "log(1+exp(x))": _smooth(_softplus),
    "1/(1+exp(-x))": _smooth(_sigmoid),
    "x*tanh(x)": _smooth(lambda x: x * mpmath.tanh(x)),
    # derivatives with squared denominators: regression test for the C printer, which
    # once printed a/(b*b) as a/b*b
    "x/(1+x**2)": _smooth(lambda x: x / (1 + x**2)),
    "sympy:log(1+exp(-t))": _smooth(lambda x: _softplus(-x)),
}

NAMED = ("identity", "relu", "softplus", "sigmoid", "tanh", "erf", "normal_cdf", "gelu",
         "silu", "selu", "square", "cube", "g", "exp", "sign", "step")
assert set(NAMED) <= set(REFERENCES)


def _spec_entry(name):
    if name.startswith("sympy:"):
        t = sp.Symbol("t")
        return sp.log(1 + sp.exp(-t))
    return name


@pytest.fixture(scope="module")
def act_net():
    """One compiled network whose first hidden layer has one neuron per activation."""
    names = list(REFERENCES)
    arch = symflow.MLP(1, [(len(names), tuple(_spec_entry(n) for n in names), True),
                           (1, "identity", True)])
    net = symflow.Net(arch, np.zeros((1, 1)), np.zeros(1))
    return net, {name: k for k, name in enumerate(names)}


def _compiled(act_net, name, x):
    net, index = act_net
    return net.activation(1, index[name], x)


def _truth(name, x0: float):
    """``(f, f', f'', f''')`` at x0 with mpmath (mpf), and the noise floor of those numbers.

    DPS = 50 significant digits are enough for the values that matter, but in the
    tails a derivative can sit far below the function value (softplus''(300) =
    5e-131 next to softplus(300) = 300; the third derivative of erf at 30 is 3e-193
    next to erf(30) = 1), and mpmath.diff is only accurate to about 10**-dps times
    the size of the function values.  So when some value is not clearly above that
    noise floor while the floor is still within double range, we recompute with as
    many more digits as the derivatives can decay (at most like exp(-2|x|), sech^2,
    or exp(-x^2/2), Gaussian; capped at double range), which resolves everything
    down to double underflow.  Below ``noise`` a value is a true zero.
    """
    x = mpmath.mpf(x0)
    fn = REFERENCES[name](x0)
    decades = max(x0 * x0 / 2, 2 * abs(x0)) / math.log(10)
    for dps in (DPS + 10, DPS + 20 + math.ceil(min(decades, 320))):
        with mpmath.workdps(dps):
            values = [mpmath.diff(fn, x, k) if k else fn(x) for k in range(4)]
            noise = mpmath.mpf(10) ** (10 - dps) * max(abs(v) for v in values)
            if noise < TINY * 1e-10 or all(abs(v) > 1e10 * noise for v in values):
                break
    return values, noise


def _check_point(x0, got, truth, order):
    """Assertion message, or None when derivative ``order`` at x0 is right."""
    values, noise = truth
    value = values[order]
    if abs(value) > np.finfo(float).max:
        # true overflow: the only right double answer is an infinity of the right sign
        want = math.copysign(math.inf, float(mpmath.sign(value)))
        return None if got == want else f"expected {want}, got {got!r}"
    if np.isnan(got):
        return f"got NaN (true value {mpmath.nstr(value, 17)})"
    if abs(value) <= noise or abs(value) < TINY:
        # a true zero, or a value that underflows double range: absolute error only
        return None if abs(got) <= TINY else (
            f"true value {mpmath.nstr(value, 5)} is zero in double range, but got {got!r}")
    err = abs((mpmath.mpf(got) - value) / value)
    kappa = abs(x0 * values[order + 1] / value)
    tol = RTOL + COND_ULPS * float(kappa)
    if err <= tol:
        return None
    return (f"relative error {float(err):.2e} > {tol:.1e}: got {got!r}, "
            f"true {mpmath.nstr(value, 20)}")


@pytest.mark.parametrize("name", list(REFERENCES))
def test_value_and_derivatives_match_mpmath(act_net, name):
    f, d1, d2 = _compiled(act_net, name, GRID)
    failures = []
    for k, x0 in enumerate(GRID):
        x0 = float(x0)
        if name == "exp" and x0 > 709.78:
            continue  # true overflow, checked in test_exp_overflows_to_inf
        truth = _truth(name, x0)
        for order, got in enumerate((f[k], d1[k], d2[k])):
            msg = _check_point(x0, float(got), truth, order)
            if msg:
                failures.append(f"{name}{chr(39) * order}({x0:g}): {msg}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_no_nan_anywhere(act_net, name):
    # the grid plus a dense sweep of the range the library promises (|x| <= 1e3)
    x = np.concatenate([GRID, np.linspace(-1000, 1000, 20001)])
    for order, values in enumerate(_compiled(act_net, name, x)):
        bad = x[np.isnan(values)]
        assert bad.size == 0, f"{name} derivative {order} is NaN at x = {bad[:10]}"


def test_exp_overflows_to_inf(act_net):
    f, d1, d2 = _compiled(act_net, "exp", np.array([709.0, 709.78, 709.79, 710.0, 1000.0]))
    # exp(709.78) = 1.7968e308 < DBL_MAX = 1.7977e308; exp(709.79) > DBL_MAX
    assert np.isfinite(f[:2]).all() and np.isfinite(d1[:2]).all() and np.isfinite(d2[:2]).all()
    for values in (f, d1, d2):
        assert (values[2:] == np.inf).all(), values


def test_tanh_derivatives_keep_relative_accuracy_in_the_tails(act_net):
    """tanh' = sech^2 and tanh'' = -2 tanh sech^2; 1 - tanh^2 would give 0 beyond |x| ~ 19."""
    x = np.array([10.0, 19.0, 20.0, 25.0, 40.0, 100.0, 300.0, 350.0])
    x = np.concatenate([x, -x])
    _, d1, d2 = _compiled(act_net, "tanh", x)
    with mpmath.workdps(DPS):
        for k, x0 in enumerate(x):
            s2 = mpmath.sech(x0) ** 2
            want1, want2 = s2, -2 * mpmath.tanh(x0) * s2
            # kappa of sech^2 is 2|x tanh x| <= 700: tolerance scaled as in _check_point
            tol = RTOL + COND_ULPS * 2 * abs(x0)
            assert d1[k] > 0 and abs((d1[k] - want1) / want1) <= tol, (x0, d1[k], want1)
            assert abs((d2[k] - want2) / want2) <= tol, (x0, d2[k], want2)


def test_user_softplus_expression_is_as_accurate_as_named(act_net):
    """'log(1+exp(x))' is rewritten to the overflow-free softplus: bitwise-close results."""
    x = np.concatenate([GRID, np.linspace(-800, 800, 1601)])
    named = _compiled(act_net, "softplus", x)
    user = _compiled(act_net, "log(1+exp(x))", x)
    for a, b in zip(named, user):
        assert np.isfinite(b).all()
        np.testing.assert_allclose(b, a, rtol=4 * np.finfo(float).eps, atol=0)


# ---------------------------------------------------------------------------------------
# symflow's own vectorizable exp and log1p (used by every kernel): dense ulp check
# ---------------------------------------------------------------------------------------
def _ulp_errors(got, ref):
    ref = np.asarray(ref, dtype=float)
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_vectorized_exp_and_log1p_are_within_two_ulp():
    """The kernels' sf_exp (claimed <= 1 ulp) and sf_log1p (<= 2 ulp) against mpmath at
    40 digits on 6000 random points spanning their whole domains, plus special values."""
    import mpmath

    rng = np.random.default_rng(2024)
    arch = symflow.MLP(1, [(2, ("exp", "log(1 + x)"), True), (1, "identity", True)])
    net = symflow.Net(arch, np.zeros((1, 1)), np.zeros(1))
    with mpmath.workdps(40):
        x = np.concatenate([rng.uniform(-745, 709.78, 2000), rng.uniform(-1, 1, 1000),
                            rng.normal(size=200) * 1e-9])
        got = net.activation(1, 0, x)[0]
        ref = np.array([float(mpmath.exp(mpmath.mpf(v))) for v in x])
        normal = ref > 2.3e-308
        assert _ulp_errors(got[normal], ref[normal]).max() <= 1.0
        assert np.all(got[~normal] == ref[~normal])  # subnormal results are rounded exactly
        t = np.concatenate([rng.uniform(-1, 0, 500), rng.uniform(0, 1, 1000),
                            10.0 ** rng.uniform(-300, 300, 1300)])
        got = net.activation(1, 1, t)[0]
        ref = [float(mpmath.log1p(mpmath.mpf(v))) for v in t]
        assert _ulp_errors(got, ref).max() <= 2.0
    special_exp = net.activation(1, 0, [np.inf, -np.inf, 709.79, -745.2, 0.0])[0]
    assert special_exp.tolist() == [np.inf, 0.0, np.inf, 0.0, 1.0]
    assert np.isnan(net.activation(1, 0, [np.nan])[0]).all()
    special_log = net.activation(1, 1, [-1.0, 0.0, np.inf, 1e-320])[0]
    assert special_log.tolist() == [-np.inf, 0.0, np.inf, 1e-320]


def test_expm1_polynomial_meets_its_stated_accuracy():
    """sf_expm1_poly's coefficients, read from templates/math_helpers.h, give
    1 + r + r^2 Q(r) within 1.6e-17 relative of e^r on |r| <= ln2/2 (its comment's
    claim), with the polynomial evaluated in mpmath at 50 digits against mpmath's exp."""
    import mpmath

    from symflow.emit import template_text

    src = template_text("math_helpers.h")
    body = src[src.index("static const double sf_expm1_q[10] = {"):]
    body = body[body.index("{") + 1:body.index("}")]
    coefs = [float(c) for c in body.split(",")]
    assert len(coefs) == 10  # Q of degree 9: r^2 .. r^11
    with mpmath.workdps(50):
        half_ln2 = mpmath.log(2) / 2
        worst = mpmath.mpf(0)
        for i in range(2001):
            r = -half_ln2 + 2 * half_ln2 * i / 2000
            q = sum(mpmath.mpf(c) * r**k for k, c in enumerate(coefs))
            worst = max(worst, abs((1 + r + r * r * q) / mpmath.exp(r) - 1))
    assert worst <= 1.6e-17


def test_log1p_polynomial_meets_its_stated_accuracy():
    """sf_log1p_unit's polynomial T, read from templates/math_helpers.h: R(z) = z T(z)
    stands for 2 atanh(s)/s - 2 (z = s^2, s = e/(2 + e)) within 1.93e-16 relative on
    (0, 1/9], and its error moves log(1 + e) = 2s + s R by < 0.05 ulp for e in (0, 1]
    (its comment's claims), evaluated in mpmath at 60 digits."""
    import mpmath

    from symflow.emit import template_text

    src = template_text("math_helpers.h")
    body = src[src.index("static const double sf_log1p_t[10] = {"):]
    coefs = [float(c) for c in body[body.index("{") + 1:body.index("}")].split(",")]
    assert len(coefs) == 10
    with mpmath.workdps(60):
        worst_rel, worst_ulp = mpmath.mpf(0), mpmath.mpf(0)
        for i in range(1, 2001):
            e = mpmath.mpf(i) / 2000
            s = e / (2 + e)
            z = s * s
            exact = (2 * mpmath.atanh(s) / s - 2) / z
            t = sum(mpmath.mpf(c) * z**k for k, c in enumerate(coefs))
            worst_rel = max(worst_rel, abs(t / exact - 1))
            ulp = mpmath.mpf(2) ** (mpmath.floor(mpmath.log(mpmath.log1p(e), 2)) - 52)
            worst_ulp = max(worst_ulp, abs(s * z * (t - exact)) / ulp)
    assert worst_rel <= 1.93e-16
    assert worst_ulp < 0.05


def test_vectorized_sigmoid_softplus_tanh_are_within_three_ulp():
    """The kernels' branch-free sigmoid, softplus and tanh (shared exp(-|x|), log1p of it
    by the atanh series, expm1-based tanh; math_helpers.h) against mpmath at 40 digits on
    9000 random points: <= 3 ulp (2 observed) where the value is a normal double, and
    the derivatives built from them (sigmoid(x) sigmoid(-x), sech^2) <= 6 ulp (5
    observed).  Also the limits, signed zeros and NaN."""
    import mpmath

    rng = np.random.default_rng(77)
    arch = symflow.MLP(1, [(3, ("sigmoid", "softplus", "tanh"), True), (1, "identity", True)])
    net = symflow.Net(arch, np.zeros((1, 1)), np.zeros(1))
    x = np.concatenate([rng.uniform(-3, 3, 3000), rng.uniform(-40, 40, 3000),
                        rng.uniform(-745, 745, 2000), rng.normal(size=1000) * 1e-6])
    with mpmath.workdps(40):
        xs = [mpmath.mpf(v) for v in x]
        sig = np.array([float(1 / (1 + mpmath.exp(-v))) for v in xs])
        dsig = np.array([float(mpmath.exp(-v) / (1 + mpmath.exp(-v)) ** 2) for v in xs])
        spl = np.array([float(mpmath.log1p(mpmath.exp(v))) for v in xs])
        tnh = np.array([float(mpmath.tanh(v)) for v in xs])
        sech2 = np.array([float(mpmath.sech(v) ** 2) for v in xs])
    checks = [(0, 0, sig, 3), (0, 1, dsig, 6), (1, 0, spl, 3), (1, 1, sig, 3),
              (2, 0, tnh, 3), (2, 1, sech2, 6)]
    for neuron, order, ref, ulps in checks:
        got = net.activation(1, neuron, x)[order]
        normal = np.abs(ref) > 2.3e-308
        assert _ulp_errors(got[normal], ref[normal]).max() <= ulps, (neuron, order)
        assert np.all(np.abs(got[~normal] - ref[~normal]) <= 1e-320), (neuron, order)
    special = np.array([0.0, -0.0, 800.0, -800.0, np.inf, -np.inf])
    f_sig, f_spl, f_tanh = (net.activation(1, i, special)[0] for i in range(3))
    assert f_sig.tolist() == [0.5, 0.5, 1.0, 0.0, 1.0, 0.0]
    assert f_spl.tolist() == [np.log(2.0), np.log(2.0), 800.0, 0.0, np.inf, 0.0]
    assert f_tanh.tolist() == [0.0, -0.0, 1.0, -1.0, 1.0, -1.0]
    assert np.signbit(f_tanh[1]) and not np.signbit(f_tanh[0])
    for i in range(3):
        assert np.isnan(net.activation(1, i, [np.nan])[0]).all()

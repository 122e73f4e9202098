"""GaussianNet: infinite-data teacher-student losses against independent references.

References used here never call symflow's SymPy engine: nested adaptive quadrature
with SciPy over NumPy/SciPy implementations of the activations written in this
file, published closed forms (Saad & Solla 1995 for erf, Cho & Saul 2009 for
relu), Monte Carlo with 10^6 samples through the finite-data ``Net``, and finite
differences of the loss.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from scipy import integrate, special

import symflow
from symflow import MLP, Net
from symflow.errors import GaussianPairError, ParameterError, SpecError
from symflow.gaussian import GaussianNet, TeacherNet, gauss_hermite_net

SELU_L, SELU_A = 1.0507009873554804934, 1.6732632423543772848

# independent NumPy/SciPy activations
ACT = {
    "identity": lambda x: x,
    "square": lambda x: x * x / 2,
    "cube": lambda x: x**3,
    "exp": np.exp,
    "erf": lambda x: special.erf(x / np.sqrt(2)),
    "normal_cdf": special.ndtr,
    "gelu": lambda x: x * special.ndtr(x),
    "relu": lambda x: np.maximum(x, 0.0),
    "step": lambda x: (np.asarray(x) > 0).astype(float),
    "sign": np.sign,
    "selu": lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "sigmoid": special.expit,
    "tanh": np.tanh,
    "silu": lambda x: x * special.expit(x),
    "g": lambda x: special.expit(4 * x) + np.logaddexp(0.0, x),
}
KINKED = {"relu", "step", "sign", "selu"}
CLOSED = ["identity", "square", "cube", "erf", "normal_cdf", "relu", "step", "sign"]
QUAD = ["softplus", "tanh", "sigmoid", "silu", "g"]


def ref_pair(a, b, m1, m2, s11, s12, s22):
    """E[a(h1) b(h2)] by nested adaptive quadrature (kinks at 0 split the intervals)."""
    with warnings.catch_warnings():  # QUADPACK says when it hits round-off: that is the goal
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return _ref_pair(a, b, m1, m2, s11, s12, s22)


def _ref_pair(a, b, m1, m2, s11, s12, s22):
    fa, fb = ACT[a], ACT[b]
    L11 = np.sqrt(s11)
    L21 = s12 / L11
    L22 = np.sqrt(max(s22 - L21**2, 0.0))

    def inner(z1):
        base = m2 + L21 * z1
        if L22 == 0.0:
            return float(fb(base))
        pts = [(-base) / L22] if b in KINKED and abs(base / L22) < 12 else None
        val = integrate.quad(lambda z2: fb(base + L22 * z2) * np.exp(-z2 * z2 / 2),
                             -14, 14, points=pts, epsabs=1e-15, epsrel=1e-13, limit=400)[0]
        return val / np.sqrt(2 * np.pi)

    pts = [-m1 / L11] if a in KINKED and abs(m1 / L11) < 12 else []
    if L22 > 0 and b in KINKED and L21 != 0:
        pts.append(-m2 / L21)
    pts = [p for p in pts if -14 < p < 14] or None
    val = integrate.quad(lambda z1: fa(m1 + L11 * z1) * inner(z1) * np.exp(-z1 * z1 / 2),
                         -14, 14, points=pts, epsabs=1e-15, epsrel=1e-13, limit=400)[0]
    return val / np.sqrt(2 * np.pi)


@pytest.fixture(scope="module")
def closed_net():
    """One compiled module holding every closed-form pair among CLOSED."""
    t = MLP(2, [(len(CLOSED), tuple(CLOSED), True), (1, "identity", True)])
    teacher = TeacherNet(t, t.random_params(seed=1))
    return GaussianNet(teacher, MLP(2, [(1, "relu", True), (1, "identity", True)]))


@pytest.fixture(scope="module")
def quad_net():
    acts = tuple(QUAD + ["erf", "identity", "cube"])
    t = MLP(2, [(len(acts), acts, True), (1, "identity", True)])
    teacher = TeacherNet(t, t.random_params(seed=1))
    return GaussianNet(teacher, MLP(2, [(1, "softplus", True), (1, "identity", True)]))


MOMENTS = [  # (m1, m2, s11, s12, s22)
    (0.3, -0.7, 1.3, 0.4, 0.8),
    (-1.1, 0.2, 0.5, -0.3, 2.0),
    (0.0, 0.0, 2.0, 1.1, 1.0),
]


@pytest.mark.parametrize("mom", MOMENTS)
@pytest.mark.parametrize("a", CLOSED)
def test_closed_pairs_match_quadrature(closed_net, a, mom):
    for b in CLOSED:
        got = closed_net.pair(a, b, *mom)[0]
        want = ref_pair(a, b, *mom)
        # closed forms: 1e-12 relative (the reference quadrature itself is good to ~1e-13)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-13), (a, b)


@pytest.mark.parametrize("mom", MOMENTS[:2] + [(0.3, -0.2, 25.0, 10.0, 16.0)])  # last: |w| = 5
@pytest.mark.parametrize("a", QUAD)
def test_quadrature_pairs_match_reference(quad_net, a, mom):
    for b in QUAD + ["erf", "identity", "cube"]:
        got = quad_net.pair(a, b, *mom)[0]
        want = ref_pair(a, b, *mom)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (a, b)


def test_gelu_selu_exp_pairs_match_quadrature():
    acts = ("gelu", "selu", "exp", "relu")
    t = MLP(1, [(4, acts, True), (1, "identity", True)])
    net = GaussianNet(TeacherNet(t, t.random_params(seed=1)),
                      MLP(1, [(1, "gelu", True), (1, "identity", True)]))
    mom = (0.3, -0.4, 0.6, 0.25, 0.5)
    for a in acts:
        for b in acts:
            assert net.pair(a, b, *mom)[0] == pytest.approx(ref_pair(a, b, *mom), rel=1e-12), (a, b)


def test_saad_solla_and_arccos_kernel(closed_net):
    rng = np.random.default_rng(0)
    for _ in range(20):
        w1, w2 = rng.normal(size=(2, 5)) * rng.uniform(0.1, 5)
        s11, s12, s22 = w1 @ w1, w1 @ w2, w2 @ w2
        # Saad & Solla, Phys. Rev. E 52, 4225 (1995), eq. (7), for g(x) = erf(x/sqrt 2)
        want = 2 / np.pi * np.arcsin(s12 / np.sqrt((1 + s11) * (1 + s22)))
        assert closed_net.pair("erf", "erf", 0, 0, s11, s12, s22)[0] == pytest.approx(want, rel=1e-13)
        # Cho & Saul (2009) arc-cosine kernel of degree 1
        th = np.arccos(np.clip(s12 / np.sqrt(s11 * s22), -1, 1))
        want = np.sqrt(s11 * s22) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
        assert closed_net.pair("relu", "relu", 0, 0, s11, s12, s22)[0] == pytest.approx(want, rel=1e-13)


def _pair_fd(net, a, b, mom, h=1e-5):
    """Central differences of the pair value and first derivatives in (m1, m2, s11, s12, s22)."""
    mom = np.array(mom, float)
    first, second = np.zeros(5), np.zeros((5, 5))
    for v in range(5):
        e = np.zeros(5)
        e[v] = h
        up, dn = net.pair(a, b, *(mom + e)), net.pair(a, b, *(mom - e))
        first[v] = (up[0] - dn[0]) / (2 * h)
        second[v] = (up[1:6] - dn[1:6]) / (2 * h)
    return first, second


def _unpack(out):
    first = out[1:6]
    second = np.zeros((5, 5))
    t = 6
    for i in range(5):
        for j in range(i, 5):
            second[i, j] = second[j, i] = out[t]
            t += 1
    return first, second


@pytest.mark.parametrize("a", CLOSED)
def test_pair_derivatives_match_finite_differences(closed_net, a):
    mom = MOMENTS[0]
    for b in CLOSED:
        first, second = _unpack(closed_net.pair(a, b, *mom))
        fd1, fd2 = _pair_fd(closed_net, a, b, mom)
        scale = max(1.0, np.abs(first).max())
        assert np.abs(first - fd1).max() <= 1e-8 * scale, (a, b)
        scale = max(1.0, np.abs(second).max())
        assert np.abs(second - fd2).max() <= 1e-7 * scale, (a, b)


def _student_teacher(t_acts, s_acts, din=3, dout=2, seed=0, tbias=True, sbias=True):
    t = MLP(din, [(len(t_acts), tuple(t_acts), tbias), (dout, "identity", tbias)])
    s = MLP(din, [(len(s_acts), tuple(s_acts), sbias), (dout, "identity", sbias)])
    rng = np.random.default_rng(seed)
    tp = rng.normal(size=t.nparams) * 0.8
    return TeacherNet(t, tp), s, rng.normal(size=s.nparams) * 0.8


def _fd_check(net, p, h=1e-5):
    L, G, H = net.loss_gradient_hessian(p)
    P = p.size
    E = np.eye(P)
    fdg = np.array([(net.loss(p + h * e) - net.loss(p - h * e)) / (2 * h) for e in E])
    fdH = np.array([(net.gradient(p + h * e) - net.gradient(p - h * e)) / (2 * h) for e in E])
    # central differences: truncation ~h^2 * third derivatives, rounding ~1e-16/h
    assert np.abs(G - fdg).max() <= 1e-8 * max(1.0, np.abs(G).max())
    assert np.abs(H - fdH).max() <= 1e-7 * max(1.0, np.abs(H).max())
    assert np.array_equal(H, H.T)
    assert net.gradient(p) == pytest.approx(G, abs=0) and net.loss(p) == L


@pytest.mark.parametrize("t_acts,s_acts", [
    (["erf", "erf"], ["erf", "erf", "erf"]),
    (["relu", "relu"], ["relu", "relu", "relu"]),
    (["relu", "erf"], ["square", "identity", "cube"]),
    (["sign", "step"], ["erf", "relu"]),
    (["tanh", "erf"], ["softplus", "softplus"]),
    (["normal_cdf"], ["erf", "normal_cdf"]),
])
def test_gradient_and_hessian_match_finite_differences(t_acts, s_acts):
    teacher, s, p = _student_teacher(t_acts, s_acts)
    _fd_check(GaussianNet(teacher, s), p)


@pytest.mark.parametrize("t_acts,s_acts", [
    (["erf", "erf"], ["erf", "erf", "erf"]),
    (["relu", "relu"], ["relu", "relu", "relu"]),
    (["relu", "erf"], ["square", "identity", "cube"]),
    (["sign", "step"], ["erf", "relu"]),
    (["tanh", "erf"], ["softplus", "softplus"]),
    (["normal_cdf", "identity"], ["normal_cdf", "step"]),
])
def test_loss_matches_monte_carlo(t_acts, s_acts):
    teacher, s, p = _student_teacher(t_acts, s_acts, seed=3)
    X = np.random.default_rng(11).normal(size=(10**6, s.din))
    r = Net(s, X, np.zeros((X.shape[0], s.dout))).predict(p) - teacher(X)
    v = (r * r).sum(axis=1)
    se = v.std() / np.sqrt(v.size)
    assert abs(GaussianNet(teacher, s).loss(p) - v.mean()) <= 4 * se


def test_gauss_hermite_net_agrees_with_gaussian_net():
    teacher, s, p = _student_teacher(["erf", "tanh"], ["softplus", "erf"], din=2, dout=1)
    g = GaussianNet(teacher, s)
    gh = gauss_hermite_net(teacher, s, n=150)  # GH converges slowly for tanh (poles)
    assert gh.loss(p) == pytest.approx(g.loss(p), rel=1e-10)
    assert np.allclose(gh.gradient(p), g.gradient(p), rtol=0, atol=1e-10)


def test_teacher_student_zero_at_teacher_and_pickles():
    teacher, s, _ = _student_teacher(["relu", "erf"], ["relu", "erf"])
    net = GaussianNet(teacher, s)
    assert abs(net.loss(teacher.params)) < 1e-14
    assert np.abs(net.gradient(teacher.params)).max() < 1e-13
    clone = pickle.loads(pickle.dumps(net))
    p = teacher.params + 0.1
    assert clone.loss(p) == net.loss(p)


# ---- degenerate points ----------------------------------------------------------------
def _degenerate_points(t):
    """Student parameters at duplicated/opposite/zero/large neurons of a 2-neuron teacher."""
    (V, c), _ = t.arch.unflatten(t.params)
    a = np.array([[0.7, -0.4, 1.1, 0.5]])
    pts = {
        "copy+dup": (np.array([V[0], V[0], V[1], -V[1]]), np.array([c[0], c[0], c[1], -c[1]])),
        "near": (np.array([V[0], V[0] * (1 + 1e-13), V[1] + 1e-13, V[1]]),
                 np.array([c[0], c[0], c[1], c[1]])),
        "zero_w": (np.array([V[0], [0.0, 0.0], V[1], [0.0, 0.0]]), np.array([c[0], 0.4, c[1], -0.2])),
        "big": (np.array([V[0] * 20 / np.linalg.norm(V[0]), V[0], -V[1] * 20 / np.linalg.norm(V[1]),
                          V[1]]), np.array([c[0], c[0], 0.0, c[1]])),
        "no_bias": (np.array([V[0], V[0], -V[1], V[1]]), np.zeros(4)),
    }
    return {k: (W, b, a) for k, (W, b) in pts.items()}


@pytest.mark.parametrize("act", ["erf", "normal_cdf", "relu", "identity", "square", "cube",
                                 "tanh", "softplus"])
def test_degenerate_points_are_finite_and_correct(act):
    t_arch = MLP(2, [(2, act, True), (1, "identity", False)])
    tp = t_arch.flatten([(np.array([[1.2, -0.5], [0.3, 0.9]]), np.array([0.3, -0.6])),
                         (np.array([[1.0, -0.8]]), None)])
    teacher = TeacherNet(t_arch, tp)
    s = MLP(2, [(4, act, True), (1, "identity", False)])
    net = GaussianNet(teacher, s)
    X = np.random.default_rng(2).normal(size=(10**6, 2))
    for name, (W, b, a) in _degenerate_points(teacher).items():
        if name == "zero_w" and act == "relu":
            b = b.copy()  # relu at w = 0 needs b != 0 to be differentiable: kept so
        p = s.flatten([(W, b), (a, None)])
        L, G, H = net.loss_gradient_hessian(p)
        assert np.isfinite(L) and np.isfinite(G).all() and np.isfinite(H).all(), name
        # value: Monte Carlo within 4 standard errors
        r = Net(s, X, np.zeros((X.shape[0], 1))).predict(p) - teacher(X)
        v = (r * r).sum(axis=1)
        assert abs(L - v.mean()) <= 4 * v.std() / np.sqrt(v.size), name
        # derivatives: central differences from non-degenerate neighbours.  At the
        # degenerate point relu's third derivative jumps, so the error is O(h), not O(h^2).
        h = 1e-6
        E = np.eye(p.size)
        fdg = np.array([(net.loss(p + h * e) - net.loss(p - h * e)) / (2 * h) for e in E])
        fdH = np.array([(net.gradient(p + h * e) - net.gradient(p - h * e)) / (2 * h) for e in E])
        # relu x relu within 1 - u^2 < 1e-7 uses the limit form, accurate to O(sqrt(1 - u^2))
        # (see templates/gaussian.c.j2, SF_DEGENERATE): measured up to 2e-4 here.
        tol = 5e-4 if act == "relu" else 1e-6
        assert np.abs(G - fdg).max() <= tol * max(1, np.abs(G).max()), name
        assert np.abs(H - fdH).max() <= tol * max(1, np.abs(H).max()), name


# ---- bad input ----------------------------------------------------------------------
def test_bad_input_errors():
    t = MLP(2, [(2, "erf", True), (1, "identity", True)])
    teacher = TeacherNet(t, t.random_params(seed=0))
    with pytest.raises(SpecError, match="one hidden layer"):
        GaussianNet(teacher, MLP(2, [(2, "erf", True), (2, "erf", True), (1, "identity", True)]))
    with pytest.raises(SpecError, match="identity"):
        GaussianNet(teacher, MLP(2, [(2, "erf", True), (1, "tanh", True)]))
    with pytest.raises(SpecError, match="input dimension"):
        GaussianNet(teacher, MLP(3, [(2, "erf", True), (1, "identity", True)]))
    with pytest.raises(SpecError, match="outputs"):
        GaussianNet(teacher, MLP(2, [(2, "erf", True), (2, "identity", True)]))
    with pytest.raises(SpecError, match="TeacherNet"):
        GaussianNet(t, MLP(2, [(2, "erf", True), (1, "identity", True)]))
    with pytest.raises(GaussianPairError, match="kink"):
        GaussianNet(teacher, MLP(2, [(2, "x*step(x) + 0.1*tanh(x)", True), (1, "identity", True)]))
    relu_t = TeacherNet(MLP(2, [(1, "relu", True), (1, "identity", True)]), [1.0, 0.0, 0.0, 1.0, 0.0])
    with pytest.raises(GaussianPairError, match="relu"):
        GaussianNet(relu_t, MLP(2, [(2, "softplus", True), (1, "identity", True)]))
    with pytest.raises(ParameterError):
        GaussianNet(teacher, MLP(2, [(2, "erf", True), (1, "identity", True)])).loss(np.zeros(3))
    with pytest.raises(SpecError, match="din = 3"):
        gauss_hermite_net(TeacherNet(MLP(3, [(1, "erf", True), (1, "identity", True)]),
                                     np.zeros(6)), MLP(3, [(1, "erf", True), (1, "identity", True)]))
    with pytest.raises(SpecError, match="one hidden layer"):
        TeacherNet(MLP(2, [(1, "identity", True)]), np.zeros(3))


def test_public_names():
    assert symflow.GaussianNet is GaussianNet and symflow.TeacherNet is TeacherNet
    assert symflow.gauss_hermite_net is gauss_hermite_net


# ---- inspection ---------------------------------------------------------------------
def test_loss_expression_matches_compiled_loss():
    import sympy as sp

    for act, bias in (("erf", False), ("relu", True)):
        t = MLP(2, [(2, act, bias), (1, "identity", bias)])
        teacher = TeacherNet(t, np.random.default_rng(1).normal(size=t.nparams))
        s = MLP(2, [(2, act, bias), (1, "identity", bias)])
        net = GaussianNet(teacher, s)
        expr = net.loss_expression()
        p = np.random.default_rng(2).normal(size=s.nparams)
        subs = dict(zip(sp.symbols(s.parameter_names(), real=True), p))
        assert float(sp.N(expr.subs(subs), 20)) == pytest.approx(net.loss(p), rel=1e-12)
    quad = GaussianNet(TeacherNet(MLP(1, [(1, "tanh", True), (1, "identity", True)]),
                                  [1.0, 0.0, 1.0, 0.0]),
                       MLP(1, [(1, "tanh", True), (1, "identity", True)]))
    with pytest.raises(GaussianPairError, match="numerically"):
        quad.loss_expression()


def test_gaussian_formulas_and_cli(capsys):
    import sympy as sp

    from symflow.cli import main
    from symflow.symbolic.formulas import gaussian_formulas

    f = gaussian_formulas("relu", "relu")
    assert len(f) == 21
    e = f["E[relu(h1) relu(h2)]"]
    m1, m2, s11, s12, s22 = sp.symbols("m1 m2 s11 s12 s22", real=True)
    pt = {"m1": 0.3, "m2": -0.2, "s11": 1.5, "s12": 0.4, "s22": 0.7}
    val = e.subs({sym: pt[sym.name] for sym in e.free_symbols if sym.name in pt})
    val = val.subs({sym: pt["s11"] * pt["s22"] - pt["s12"] ** 2
                    for sym in val.free_symbols if sym.name == "D"})
    assert float(sp.N(val, 20)) == pytest.approx(ref_pair("relu", "relu", *pt.values()), rel=1e-11)
    assert main(["formulas", "gelu", "--gaussian"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("E[gelu(h)] = ") and "E[gelu(h)^2] = " in out
    assert main(["formulas", "relu", "--gaussian", "erf", "--latex"]) == 0
    assert "\\Phi_2" in capsys.readouterr().out
    with pytest.raises(SpecError, match="closed-form"):
        gaussian_formulas("tanh", "erf")


def test_cached_gaussian_net_needs_no_sympy_and_families_match_terms(tmp_path):
    import os
    import subprocess
    import sys

    from symflow.symbolic.activations import NAMED
    from symflow.symbolic.gaussian.families import CLOSED_NAMES
    from symflow.symbolic.gaussian.pairs import _named_terms, h_symbols

    assert {a for a in NAMED if _named_terms(a, h_symbols()[0]) is not None} == CLOSED_NAMES
    code = (
        "import sys, numpy as np, symflow\n"
        "from symflow import MLP\n"
        "t = MLP(2, [(2, 'erf', True), (1, 'identity', True)])\n"
        "T = symflow.TeacherNet(t, t.random_params(seed=0))\n"
        "net = symflow.GaussianNet(T, MLP(2, [(2, 'erf', True), (1, 'identity', True)]))\n"
        "net.hessian(np.ones(t.nparams))\n"
        "print('sympy' in sys.modules)\n")
    env = dict(os.environ, SYMFLOW_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "False"  # cache hit: no SymPy import at all

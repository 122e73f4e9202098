"""Loss, gradient, Hessian and predictions of ``Net`` against independent references.

References (never symflow's SymPy machinery):
- a plain NumPy/SciPy forward pass written below (``ref_loss``, ``ref_forward``);
- central finite differences of that NumPy loss (gradient) and of symflow's
  gradient (Hessian);
- a NumPy back-propagation for one architecture (sample-count test);
- PyTorch float64 autograd where torch is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf, expit, ndtr

import symflow

sp = pytest.importorskip("sympy")

EPS = np.finfo(float).eps
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946

# ---------------------------------------------------------------------------------------
# the NumPy reference
# ---------------------------------------------------------------------------------------
NUMPY_ACTS = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "sigmoid": expit,
    "tanh": np.tanh,
    "erf": lambda x: erf(x / np.sqrt(2.0)),
    "normal_cdf": ndtr,
    "gelu": lambda x: x * ndtr(x),
    "silu": lambda x: x * expit(x),
    "selu": lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "square": lambda x: x**2 / 2,
    "cube": lambda x: x**3,
    "g": lambda x: expit(4 * x) + np.logaddexp(0.0, x),
    "exp": np.exp,
    "sign": np.sign,
    "step": lambda x: (x > 0).astype(float),
    # user expressions used below
    "x*tanh(x)": lambda x: x * np.tanh(x),
    "sin(x) + x**3/3": lambda x: np.sin(x) + x**3 / 3,
    "abs(x)": np.abs,
}
NAMED = ("identity", "relu", "softplus", "sigmoid", "tanh", "erf", "normal_cdf", "gelu",
         "silu", "selu", "square", "cube", "g", "exp", "sign", "step")
#: activations with a kink or jump at 0: finite differences must not straddle it
KINKED = {"relu", "sign", "step", "selu", "abs(x)"}

_t = sp.Symbol("t")
SYMPY_EXPR = sp.sin(_t) + _t**3 / 3  # a SymPy-expression activation (NumPy twin above)


def _np_act(act):
    if isinstance(act, str):
        return NUMPY_ACTS[act]
    if act == SYMPY_EXPR:
        return NUMPY_ACTS["sin(x) + x**3/3"]
    raise KeyError(act)


def _layer_acts(layer_spec):
    width, act = layer_spec[0], layer_spec[1]
    return list(act) if isinstance(act, tuple) else [act] * width


def ref_preacts(layers, p, X, arch):
    """Pre-activations z of every layer (list of (N, width) arrays), plain NumPy."""
    a, zs = np.asarray(X, float), []
    for li, ((W, b), ly) in enumerate(zip(arch.unflatten(p), layers)):
        z = a @ W.T + (0.0 if b is None else b)
        zs.append(z)
        if li < len(layers) - 1:
            acts = _layer_acts(ly)
            a = np.column_stack([_np_act(acts[k])(z[:, k]) for k in range(z.shape[1])])
    return zs


def ref_forward(layers, p, X, arch):
    """Network outputs (softmax probabilities for a softmax output)."""
    zL = ref_preacts(layers, p, X, arch)[-1]
    acts = _layer_acts(layers[-1])
    if acts[0] == "softmax":
        zL = zL - zL.max(axis=1, keepdims=True)
        e = np.exp(zL)
        return e / e.sum(axis=1, keepdims=True)
    return np.column_stack([_np_act(acts[k])(zL[:, k]) for k in range(zL.shape[1])])


def ref_loss(case, p):
    """Loss of the design.md conventions, from the NumPy forward pass."""
    layers, arch, X, Y, w = case.layers, case.arch, case.X, case.Y, case.w
    N = X.shape[0]
    w = np.ones(N) if w is None else w
    if arch.softmax:
        zL = ref_preacts(layers, p, X, arch)[-1]
        lse = np.logaddexp.reduce(zL, axis=1)
        per = lse - zL[np.arange(N), Y]
    else:
        Y2 = Y.reshape(N, -1)
        per = ((ref_forward(layers, p, X, arch) - Y2) ** 2).sum(axis=1)
    loss = float(np.sum(w * per) / N)
    P = p.size
    if case.maxnorm is not None:
        excess = p @ p / (2 * P) - case.maxnorm
        if excess > 0:
            loss += excess**3 / 3
    if case.merge is not None:
        layer, i, j, lam = case.merge
        W, b = arch.unflatten(p)[layer - 1]
        ti = np.append(W[i], [] if b is None else b[i])
        tj = np.append(W[j], [] if b is None else b[j])
        loss += lam / 2 * np.sum((ti - tj) ** 2)
    return loss


# ---------------------------------------------------------------------------------------
# test problems
# ---------------------------------------------------------------------------------------
class Case:
    """An architecture, data, regularisers, a parameter point and the compiled Net."""

    def __init__(self, din, layers, N=23, seed=0, weights=False, maxnorm=None, merge=None,
                 pscale=1.0, xscale=1.0, margin=None):
        rng = np.random.default_rng(seed)
        self.layers = layers
        self.arch = symflow.MLP(din, layers)
        self.p = pscale * self.arch.random_params(seed=rng) + 0.3 * rng.normal(
            size=self.arch.nparams) * pscale
        X = xscale * rng.normal(size=(N, din))
        if margin is not None:
            # drop samples whose pre-activation at a kinked neuron lies within `margin`
            # of the kink, so central differences never straddle it (see KINKED)
            keep = np.ones(N, bool)
            for ly, z in zip(layers[:-1], ref_preacts(layers, self.p, X, self.arch)[:-1]):
                for k, act in enumerate(_layer_acts(ly)):
                    if act in KINKED:
                        keep &= np.abs(z[:, k]) > margin
            X = X[keep]
            assert keep.sum() >= N // 2, "too many samples near a kink; change the seed"
        self.X = X
        n = X.shape[0]
        if self.arch.softmax:
            self.Y = rng.integers(0, self.arch.dout, size=n)
        else:
            self.Y = rng.normal(size=(n, self.arch.dout))
            if self.arch.dout == 1:
                self.Y = self.Y[:, 0]
        self.w = rng.uniform(0.2, 2.0, size=n) if weights else None
        self.maxnorm, self.merge = maxnorm, merge
        self.net = symflow.Net(self.arch, self.X, self.Y, weights=self.w, maxnorm=maxnorm,
                               merge=merge)

    def __repr__(self):
        return f"Case({self.arch!r}, N={self.X.shape[0]})"


# Architectures (compiled once per session by symflow's in-process cache).
DEPTH1 = [(2, "identity", True)]
DEPTH1_SIGMOID = [(3, "sigmoid", True)]
DEPTH3 = [(4, "tanh", True), (3, "softplus", False), (2, "sigmoid", True)]
DEPTH4 = [(3, "tanh", True), (3, "gelu", True), (2, "silu", False), (2, "identity", True)]
MIXED = [(5, ("tanh", "gelu", "x*tanh(x)", SYMPY_EXPR, "softplus"), True),
         (3, ("sigmoid", "identity", "erf"), False), (2, ("sigmoid", "identity"), True)]
MIXED_KINKS = [(5, ("relu", "tanh", "abs(x)", "selu", "softplus"), True),
               (2, ("step", "sign"), True), (1, "identity", False)]
NO_BIAS = [(3, "softplus", False), (2, "tanh", False), (1, "identity", False)]
STRING_EXPR = [(3, "x*tanh(x)", True), (1, "identity", True)]
SYMPY_LAYER = [(3, SYMPY_EXPR, True), (1, "tanh", True)]
SOFTMAX = [(5, "tanh", True), (4, "softmax", True)]
SOFTMAX_DEEP = [(4, "gelu", True), (3, "silu", False), (3, "softmax", True)]
WIDE = [(20, "softplus", True), (3, "sigmoid", True)]  # P = 163, N > one 256-sample block
# Deep nets over full 32-sample blocks and a partial one (N = 77 = 2 * 32 + 13; 70 = 2 * 32
# + 6): the register-tiled matmul of full blocks (from 16 inputs; back-propagation into 17
# neurons: a last single row), and the dense Hessian blocks summed over each block (K and C
# in block layout; both orders of the dot products: more column neurons than inputs, and
# fewer)
DEEP_ODD = [(17, "softplus", True), (16, "tanh", True), (2, "sigmoid", True)]
DEEP_SOFTMAX = [(4, "gelu", True), (3, "silu", False), (3, "tanh", True), (3, "softmax", True)]
# One hidden layer into one output from 16 inputs (emit._FUSED_INPUT_MAX): the gradient
# kernel's fused path at its largest input count, with no hidden bias, a non-identity
# output and full and partial blocks; 17 inputs take the general path.
FUSED_16 = [(5, "tanh", False), (1, "sigmoid", True)]


def hidden(act):
    return [(3, act, True), (1, "identity", True)]


def _margin(layers):
    kinked = any(a in KINKED for ly in layers[:-1] for a in _layer_acts(ly))
    return 1e-3 if kinked else None


# name -> (din, layers, extra Case keyword arguments)
CASES = {
    **{f"hidden-{a}": (2, hidden(a), {}) for a in NAMED},
    "depth1": (3, DEPTH1, {}),
    "depth1-sigmoid-out": (3, DEPTH1_SIGMOID, {"weights": True}),
    "depth3-sigmoid-out": (3, DEPTH3, {}),
    "depth4": (2, DEPTH4, {}),
    "mixed": (2, MIXED, {}),
    "mixed-kinks": (3, MIXED_KINKS, {}),
    "no-bias": (2, NO_BIAS, {}),
    "string-expr": (2, STRING_EXPR, {}),
    "sympy-expr": (2, SYMPY_LAYER, {}),
    "weights": (3, DEPTH3, {"weights": True}),
    "softmax": (3, SOFTMAX, {}),
    "softmax-weights-deep": (2, SOFTMAX_DEEP, {"weights": True}),
    "wide-N300": (4, WIDE, {"weights": True, "N": 300}),
    "deep-N77": (3, DEEP_ODD, {"weights": True, "N": 77}),
    "deep-softmax-N70": (2, DEEP_SOFTMAX, {"N": 70}),
    "fused-din16-N77": (16, FUSED_16, {"weights": True, "N": 77}),
    "din17-N77": (17, FUSED_16, {"weights": True, "N": 77}),
    "merge-layer1": (3, DEPTH3, {"merge": (1, 0, 2, 0.7)}),
    "merge-layer2-nobias": (3, DEPTH3, {"merge": (2, 2, 1, 1.3), "weights": True}),
}
# the exp activation: keep inputs moderate so the NumPy reference stays finite
_SPECIAL = {"hidden-exp": {"pscale": 0.5}}


def _make(name, **extra):
    din, layers, kw = CASES[name]
    kw = {**kw, **_SPECIAL.get(name, {}), **extra}
    return Case(din, layers, margin=_margin(layers), **kw)


_built: dict = {}


def case(name) -> Case:
    if name not in _built:
        _built[name] = _make(name)
    return _built[name]


def maxnorm_case(active: bool) -> Case:
    key = f"maxnorm-{active}"
    if key not in _built:
        base = _make("depth3-sigmoid-out")
        half_sq = base.p @ base.p / (2 * base.arch.nparams)
        # c below |p|^2/(2P): barrier active; c above: inactive (loss unchanged)
        c = 0.5 * half_sq if active else 2.0 * half_sq
        _built[key] = _make("depth3-sigmoid-out", maxnorm=c)
    return _built[key]


ALL = list(CASES)


def all_cases():
    return [pytest.param(n, id=n) for n in ALL] + [
        pytest.param("maxnorm-active", id="maxnorm-active"),
        pytest.param("maxnorm-inactive", id="maxnorm-inactive")]


def get(name) -> Case:
    if name.startswith("maxnorm-"):
        return maxnorm_case(name == "maxnorm-active")
    return case(name)


# ---------------------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------------------
def central_gradient(f, p, h):
    g = np.empty_like(p)
    for i in range(p.size):
        e = np.zeros_like(p)
        e[i] = h * max(1.0, abs(p[i]))
        g[i] = (f(p + e) - f(p - e)) / (2 * e[i])
    return g


def central_jacobian(F, p, h):
    cols = []
    for i in range(p.size):
        e = np.zeros_like(p)
        e[i] = h * max(1.0, abs(p[i]))
        cols.append((F(p + e) - F(p - e)) / (2 * e[i]))
    return np.column_stack(cols)


# Step for central differences.  Truncation error ~ h^2 |f'''|/6, round-off
# ~ eps |f| / h; h = 1e-5 (relative to max(1, |p_i|)) balances them near
# h ~ eps^(1/3) ~ 6e-6, giving errors ~1e-10 relative to the function scale.
H_FD = 1e-5
#: Gradient vs FD of the NumPy loss, relative to max(|L|, |g|): observed errors are
#: 1e-11..4e-10 over these cases (largest for cube), so 1e-8 keeps a 25x margin and
#: still flags any wrong term, sample or weight (those give O(1e-3..1) errors).
GRAD_RTOL = 1e-8
#: Hessian vs FD of symflow's gradient, relative to max|H|; same error budget.
HESS_RTOL = 1e-8


# ---------------------------------------------------------------------------------------
# 1. loss, gradient, Hessian
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", all_cases())
def test_loss_matches_numpy_forward_pass(name):
    c = get(name)
    want = ref_loss(c, c.p)
    # Losses are sums of non-negative terms computed by the same formulas in a
    # different order / with different libm calls: a few ulp per term, so 1e-12
    # relative is ~1e4 ulp of slack yet catches any wrong sample, weight or term.
    assert c.net.loss(c.p) == pytest.approx(want, rel=1e-12, abs=0)
    # the three kernels accumulate the loss separately; all must agree
    loss_g, _ = c.net.loss_and_gradient(c.p)
    loss_h, _, _ = c.net.loss_gradient_hessian(c.p)
    assert loss_g == pytest.approx(want, rel=1e-12, abs=0)
    assert loss_h == pytest.approx(want, rel=1e-12, abs=0)


def test_maxnorm_inactive_adds_nothing_and_active_adds_the_barrier():
    on, off = maxnorm_case(True), maxnorm_case(False)
    plain = _make("depth3-sigmoid-out")
    base = plain.net.loss(plain.p)
    assert off.net.loss(off.p) == base
    half_sq = on.p @ on.p / (2 * on.arch.nparams)
    barrier = (half_sq - on.maxnorm) ** 3 / 3
    assert barrier > 1e-6 * base  # the active case really exercises the barrier
    assert on.net.loss(on.p) == pytest.approx(base + barrier, rel=1e-13)


@pytest.mark.parametrize("name", all_cases())
def test_gradient_matches_finite_differences_of_numpy_loss(name):
    c = get(name)
    g = c.net.gradient(c.p)
    g_fd = central_gradient(lambda q: ref_loss(c, q), c.p, H_FD)
    scale = max(np.abs(g).max(), abs(ref_loss(c, c.p)), 1e-3)
    err = np.abs(g - g_fd).max()
    assert err <= GRAD_RTOL * scale, (err, scale)
    # gradient() and loss_gradient_hessian() run different kernels
    np.testing.assert_allclose(c.net.loss_gradient_hessian(c.p)[1], g, rtol=0,
                               atol=1e-13 * scale)


@pytest.mark.parametrize("name", all_cases())
def test_hessian_is_symmetric_and_matches_finite_differences_of_gradient(name):
    c = get(name)
    H = c.net.hessian(c.p)
    assert H.shape == (c.arch.nparams,) * 2
    assert np.array_equal(H, H.T)  # exactly: the kernel mirrors one triangle
    H_fd = central_jacobian(c.net.gradient, c.p, H_FD)
    scale = max(np.abs(H).max(), 1e-3)
    err = np.abs(H - H_fd).max()
    assert err <= HESS_RTOL * scale, (err, scale)


def test_kinked_second_derivatives_vanish_almost_everywhere():
    """relu, step, sign (and selu for x > 0) have f'' = 0 away from the kink."""
    c = case("mixed-kinks")
    x = np.array([-3.0, -0.5, -1e-3, 1e-3, 0.5, 3.0])
    f, d1, d2 = c.net.activation(1, 0, x)  # relu
    assert np.array_equal(d1, (x > 0).astype(float)) and np.array_equal(d2, np.zeros(6))
    for neuron in (0, 1):  # step, sign
        f, d1, d2 = c.net.activation(2, neuron, x)
        assert np.array_equal(d1, np.zeros(6)) and np.array_equal(d2, np.zeros(6))
    f, d1, d2 = c.net.activation(1, 2, x)  # abs
    assert np.array_equal(d1, np.sign(x)) and np.array_equal(d2, np.zeros(6))
    f, d1, d2 = c.net.activation(1, 3, x[x > 0])  # selu, linear branch
    assert np.allclose(d1, SELU_LAMBDA, rtol=1e-15) and np.array_equal(d2, np.zeros(3))
    # Consequence checked exactly: with step/sign in layer 2, nothing upstream of
    # them receives a gradient, so the first-layer block of H is exactly 0.
    H = c.net.hessian(c.p)
    P1 = c.arch.layer_nparams(1)
    assert np.array_equal(H[:P1, :P1], np.zeros((P1, P1)))


def test_finite_difference_check_can_fail():
    """Guard against a vacuous comparison: a perturbed gradient is rejected."""
    c = case("depth3-sigmoid-out")
    g = c.net.gradient(c.p)
    g_fd = central_gradient(lambda q: ref_loss(c, q), c.p, H_FD)
    scale = np.abs(g).max()
    assert np.abs(g - g_fd).max() <= GRAD_RTOL * scale
    k = int(np.argmax(np.abs(g)))
    g[k] *= 1 + 1e-5  # a 1e-5 relative error in the largest component
    assert np.abs(g - g_fd).max() > GRAD_RTOL * scale


# ---------------------------------------------------------------------------------------
# 2. every sample count (a peer got N mod 8 in {3,5,6,7} wrong)
# ---------------------------------------------------------------------------------------
SAMPLE_LAYERS = [(4, "softplus", True), (2, "identity", True)]


def _numpy_loss_grad(arch, p, X, Y, w):
    """Analytic loss and gradient of softplus -> identity with MSE, plain NumPy."""
    (W1, b1), (W2, b2) = arch.unflatten(p)
    N = X.shape[0]
    w = np.ones(N) if w is None else w
    z1 = X @ W1.T + b1
    a1 = np.logaddexp(0.0, z1)
    r = a1 @ W2.T + b2 - Y
    loss = np.sum(w * (r**2).sum(axis=1)) / N
    d2 = 2 * r * w[:, None] / N
    d1 = (d2 @ W2) * expit(z1)
    grad = arch.flatten([(d1.T @ X, d1.sum(0)), (d2.T @ a1, d2.sum(0))])
    # per-parameter sum of |contributions|: the scale of the round-off in any order
    absgrad = arch.flatten([(np.abs(d1).T @ np.abs(X), np.abs(d1).sum(0)),
                            (np.abs(d2).T @ np.abs(a1), np.abs(d2).sum(0))])
    return loss, grad, absgrad


@pytest.mark.parametrize("outputs", [2, 1], ids=["two-outputs", "one-output"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_every_sample_count(weighted, outputs):
    """One output takes the gradient kernel's fused path for one hidden layer (layer 1's
    deltas folded into its gradient sums, emit._FUSED_INPUT_MAX); two take the general
    one.  Up to 32 samples (one block) the sums go straight into the gradient; above,
    they are kept per vector lane (sf_block_ldots), with the samples past a multiple of
    4 in lane 0, and added up at the end."""
    arch = symflow.MLP(3, [SAMPLE_LAYERS[0], (outputs, "identity", True)])
    rng = np.random.default_rng(42)
    p = arch.random_params(seed=1) + 0.2 * rng.normal(size=arch.nparams)
    counts = list(range(1, 101)) + [255, 256, 257, 511, 512, 513, 1000]
    bad = []
    for N in counts:
        X = rng.normal(size=(N, 3))
        Y = rng.normal(size=(N, outputs))
        w = rng.uniform(0.1, 3.0, size=N) if weighted else None
        net = symflow.Net(arch, X, Y, weights=w)
        loss, grad, absgrad = _numpy_loss_grad(arch, p, X, Y, w)
        got_l, got_g = net.loss_and_gradient(p)
        got_lh, got_gh, _ = net.loss_gradient_hessian(p)
        # sums of N non-negative terms: error <= ~N eps relative; 1e-13 covers N <= 1000
        for name, value in (("loss", net.loss(p)), ("loss_and_gradient", got_l),
                            ("loss_gradient_hessian", got_lh)):
            if abs(value - loss) > 1e-13 * loss:
                bad.append(f"N={N} {name}: {value!r} vs {loss!r}")
        # gradient components may cancel: bound by a few ulp of the sum of |terms|
        for name, g in (("gradient", got_g), ("hessian kernel gradient", got_gh)):
            err = np.abs(g - grad) / absgrad
            if err.max() > 1e-12:
                bad.append(f"N={N} {name}: max error {err.max():.1e} of the |term| sum")
    assert not bad, "\n".join(bad)


def test_hessian_for_small_sample_counts():
    """Hessian vs FD of the NumPy analytic gradient for N = 1..16 (every N mod 8)."""
    arch = symflow.MLP(3, SAMPLE_LAYERS)
    rng = np.random.default_rng(7)
    p = arch.random_params(seed=2) + 0.2 * rng.normal(size=arch.nparams)
    for N in range(1, 17):
        X, Y = rng.normal(size=(N, 3)), rng.normal(size=(N, 2))
        w = rng.uniform(0.1, 3.0, size=N)
        H = symflow.Net(arch, X, Y, weights=w).hessian(p)
        H_fd = central_jacobian(lambda q: _numpy_loss_grad(arch, q, X, Y, w)[1], p, H_FD)
        assert np.abs(H - H_fd).max() <= HESS_RTOL * np.abs(H).max(), N


@pytest.mark.parametrize("N", [1, 7, 20, 32, 33, 45])
def test_hessian_with_few_samples_and_many_parameters(N):
    """Above 128 parameters (where dsyrk takes the Gauss-Newton part of more than 32
    columns and the outer-product loops fewer), with a sigmoid output so that some
    curvature weights are negative: the Hessian against central differences of the
    gradient kernel (checked against NumPy and finite differences of the loss above),
    for N on both sides of 32."""
    arch = symflow.MLP(3, [(30, "tanh", True), (2, "sigmoid", True)])
    assert arch.nparams == 182
    rng = np.random.default_rng(N)
    p = arch.random_params(seed=4) + 0.3 * rng.normal(size=arch.nparams)
    X, Y = rng.normal(size=(N, 3)), rng.uniform(-0.5, 1.5, size=(N, 2))
    net = symflow.Net(arch, X, Y, weights=rng.uniform(0.1, 3.0, size=N))
    H = net.hessian(p)
    H_fd = central_jacobian(net.gradient, p, H_FD)
    assert np.abs(H - H_fd).max() <= HESS_RTOL * np.abs(H).max()


# ---------------------------------------------------------------------------------------
# 3. Hessian spectrum
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["depth4", "softmax", "mixed", "merge-layer1"])
def test_hessian_spectrum(name):
    c = get(name)
    H = c.net.hessian(c.p)
    lam, V = c.net.hessian_spectrum(c.p)
    P = c.arch.nparams
    assert lam.shape == (P,) and V.shape == (P, P)
    assert np.all(np.diff(lam) >= 0), "eigenvalues must be ascending"
    scale = np.abs(lam).max()
    # orthonormal columns and H v = lambda v, to a few hundred ulp of the scale
    np.testing.assert_allclose(V.T @ V, np.eye(P), rtol=0, atol=1e-13 * P)
    np.testing.assert_allclose(H @ V, V * lam, rtol=0, atol=1e-13 * P * scale)
    assert np.sum(lam) == pytest.approx(np.trace(H), rel=0, abs=1e-13 * P * scale)


# ---------------------------------------------------------------------------------------
# 4. predictions
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["depth3-sigmoid-out", "mixed", "depth4", "hidden-gelu"])
def test_predict_matches_numpy_forward_pass(name):
    c = get(name)
    want = ref_forward(c.layers, c.p, c.X, c.arch)
    got = c.net.predict(c.p)
    assert got.shape == (c.X.shape[0], c.arch.dout)
    # one forward pass: a few ulp per operation, amplified by at most O(10) here
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    Xnew = np.random.default_rng(5).normal(size=(7, c.arch.din))
    np.testing.assert_allclose(c.net.predict(c.p, Xnew), ref_forward(c.layers, c.p, Xnew, c.arch),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "softmax-weights-deep"])
def test_predict_softmax_probabilities(name):
    c = get(name)
    got = c.net.predict(c.p)
    assert got.shape == (c.X.shape[0], c.arch.dout)
    assert (got > 0).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=4 * EPS * c.arch.dout)
    np.testing.assert_allclose(got, ref_forward(c.layers, c.p, c.X, c.arch), rtol=1e-13,
                               atol=1e-16)


# ---------------------------------------------------------------------------------------
# PyTorch float64 autograd (optional)
# ---------------------------------------------------------------------------------------
def _torch_loss(torch, c):
    X = torch.tensor(c.X, dtype=torch.float64)
    acts = {"tanh": torch.tanh, "softplus": torch.nn.functional.softplus,
            "sigmoid": torch.sigmoid, "identity": lambda x: x,
            "gelu": lambda x: torch.nn.functional.gelu(x),  # exact x*Phi(x)
            "silu": torch.nn.functional.silu}
    shapes = [(W.shape, None if b is None else b.shape) for W, b in c.arch.unflatten(c.p)]
    N = c.X.shape[0]
    w = torch.ones(N, dtype=torch.float64) if c.w is None else torch.tensor(c.w)

    def loss(q):
        a, off = X, 0
        for li, ((ws, bs), ly) in enumerate(zip(shapes, c.layers)):
            W = q[off:off + ws[0] * ws[1]].reshape(ws)
            off += ws[0] * ws[1]
            z = a @ W.T
            if bs is not None:
                z = z + q[off:off + bs[0]]
                off += bs[0]
            if li < len(c.layers) - 1 or ly[1] != "softmax":
                a = acts[ly[1]](z)
        if c.arch.softmax:
            labels = torch.tensor(c.Y, dtype=torch.long)
            per = torch.nn.functional.cross_entropy(z, labels, reduction="none")
        else:
            Y = torch.tensor(c.Y.reshape(N, -1), dtype=torch.float64)
            per = ((a - Y) ** 2).sum(dim=1)
        return (w * per).sum() / N

    return loss


@pytest.mark.parametrize("name", ["depth3-sigmoid-out", "softmax-weights-deep", "deep-N77",
                                  "deep-softmax-N70"])
def test_pytorch_autograd_gradient_and_hessian(name):
    torch = pytest.importorskip("torch")
    c = get(name)
    loss = _torch_loss(torch, c)
    q = torch.tensor(c.p, dtype=torch.float64, requires_grad=True)
    value = loss(q)
    (g_t,) = torch.autograd.grad(value, q)
    H_t = torch.autograd.functional.hessian(loss, torch.tensor(c.p, dtype=torch.float64))
    L, g, H = c.net.loss_gradient_hessian(c.p)
    # both exact in float64, different operation order: agreement to ~1e3 ulp
    assert L == pytest.approx(value.item(), rel=1e-13)
    np.testing.assert_allclose(g, g_t.numpy(), rtol=0, atol=1e-12 * np.abs(g).max())
    np.testing.assert_allclose(H, H_t.numpy(), rtol=0, atol=1e-12 * np.abs(H).max())


@pytest.mark.parametrize("N", [100, 300])
def test_gradient_of_many_parameters_on_both_sides_of_the_lane_rule(N):
    """Above 8192 parameters the gradient kernel keeps its sums per vector lane only from
    8 blocks of 32 samples on (SF_LANES_SMALL_P, SF_LANES_MIN_BLOCKS in kernels.c.j2):
    N = 100 (4 blocks) sums straight into the gradient, N = 300 (10 blocks, the last of
    12 samples) through the lanes.  P = 10401; reference: the NumPy backward pass."""
    arch = symflow.MLP(50, [(200, "softplus", True), (1, "identity", True)])
    assert arch.nparams == 10401
    rng = np.random.default_rng(8)
    p = 0.1 * rng.normal(size=arch.nparams)
    X, Y = rng.normal(size=(N, 50)), rng.normal(size=(N, 1))
    w = rng.uniform(0.1, 3.0, size=N)
    loss, grad, absgrad = _numpy_loss_grad(arch, p, X, Y, w)
    net = symflow.Net(arch, X, Y, weights=w, threads=1)   # one range of N samples
    # twice: the second call finds the first call's sums in the kernel's kept workspace
    for got_l, got_g in (net.loss_and_gradient(p), net.loss_and_gradient(p)):
        assert abs(got_l - loss) <= 1e-13 * loss
        # as in test_every_sample_count: a few ulp of each parameter's sum of |terms|
        assert np.max(np.abs(got_g - grad) / absgrad) <= 1e-12

@pytest.mark.parametrize("N", [40, 29, 57])
def test_wide_layers_use_the_blocked_dot_product_correctly(N):
    """Layers with >= 16 inputs sum in four partial sums; 37 and 19 inputs also exercise the
    remainder terms.  A partial block's forward pass runs on its sample count rounded up
    to 8, so the last blocks of N = 29 and 57 (29 and 25 samples) take the full-block path
    with zero-input pad samples.  Reference: a plain NumPy forward pass (loss to 1e-13
    relative, outputs to 1e-14) and central differences for the gradient."""
    arch = symflow.MLP(37, [(19, "tanh", True), (2, "identity", False)])
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(N, 37)), rng.normal(size=(N, 2))
    p = arch.random_params(seed=5)
    (W1, b1), (W2, _) = arch.unflatten(p)

    def ref(q):
        (A, a), (B, _) = arch.unflatten(q)
        return np.mean(np.sum((np.tanh(X @ A.T + a) @ B.T - Y) ** 2, axis=1))

    net = symflow.Net(arch, X, Y)
    assert net.loss(p) == pytest.approx(ref(p), rel=1e-13)
    # outputs are O(1) sums of 19 O(1) terms: a few ulp, 1e-14 absolute
    np.testing.assert_allclose(net.predict(p), np.tanh(X @ W1.T + b1) @ W2.T, rtol=0, atol=1e-14)
    g = net.gradient(p)
    h = 1e-6
    idx = rng.choice(arch.nparams, 25, replace=False)
    fd = np.array([(ref(p + h * e) - ref(p - h * e)) / (2 * h) for e in np.eye(arch.nparams)[idx]])
    # truncation O(h^2) ~ 1e-12, round-off ~ eps * L / h ~ 1e-10: 1e-8 of max|g| is safe
    assert np.max(np.abs(g[idx] - fd)) <= 1e-8 * np.max(np.abs(g))


def test_parameter_vectors_in_any_layout_give_the_same_results():
    """Nets pass a native float64 C-contiguous vector to the kernels as it is and send
    every other layout through check_params (a contiguous float64 copy): a strided view,
    a big-endian or read-only copy, an unpickled array (an equal dtype that is another
    object), a list and an integer array all give the same loss, gradient and Hessian
    bits as the plain vector."""
    import pickle

    c = case("hidden-softplus")
    p, net = c.p, c.net
    strided = np.zeros(2 * p.size)
    strided[::2] = p
    ref = (net.loss(p), *net.loss_gradient_hessian(p))
    readonly = p.copy()
    readonly.flags.writeable = False
    for q in (strided[::2], p.astype(">f8"), readonly, pickle.loads(pickle.dumps(p)),
              list(p)):
        got = (net.loss(q), *net.loss_gradient_hessian(q))
        assert got[0] == ref[0] and got[1] == ref[1]
        assert np.array_equal(got[2], ref[2]) and np.array_equal(got[3], ref[3])
    k = np.arange(c.arch.nparams) % 3 - 1
    assert net.loss(k) == net.loss(k.astype(float))
    assert np.array_equal(net.gradient(k), net.gradient(k.astype(float)))


@pytest.mark.parametrize("k", [10, 40])  # P = 41 and 161: both of sf_run's ways of zeroing H
@pytest.mark.parametrize("threads", [1, 2])
def test_outputs_do_not_depend_on_what_their_memory_held(monkeypatch, k, threads):
    """The loss, gradient and Hessian arrays come from numpy.empty and sf_run zeroes
    them (of the Hessian the lower triangle; the mirror writes the rest).  With every
    numpy.empty filled with NaN the results keep the same bits."""
    arch = symflow.MLP(2, [(k, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(7)
    net = symflow.Net(arch, rng.normal(size=(400, 2)), rng.normal(size=400), threads=threads)
    p = arch.random_params(seed=3)
    ref = net.loss_gradient_hessian(p)
    empty = np.empty

    def nan_empty(*args, **kwargs):
        out = empty(*args, **kwargs)
        out.fill(np.nan)
        return out

    monkeypatch.setattr(np, "empty", nan_empty)
    assert np.isnan(np.empty(3)).all()
    for _ in range(2):
        got = net.loss_gradient_hessian(p)
        assert got[0] == ref[0]
        assert np.array_equal(got[1], ref[1]) and np.array_equal(got[2], ref[2])
        assert np.array_equal(net.hessian(p), ref[2])  # its gradient and loss are C's own


@pytest.mark.parametrize("k, regularised", [(10, False), (10, True), (1025, False)])
def test_hessian_alone_is_the_hessian_of_loss_gradient_hessian(k, regularised):
    """Net.hessian runs the Hessian kernel with no gradient or loss from Python: sf_run
    sums them into a buffer of its own (on the stack up to 1024 parameters, allocated
    above: P = 4101 for k = 1025).  It must return the same bits as the Hessian of
    loss_gradient_hessian, regularisers included; the values themselves are checked
    against finite differences and PyTorch elsewhere."""
    arch = symflow.MLP(2, [(k, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(11)
    N = 3 if k > 100 else 200
    p = arch.random_params(seed=5)
    extra = {}
    if regularised:  # a maxnorm barrier that is active at p, and a merge penalty
        extra = dict(maxnorm=0.25 * (p @ p) / (2 * arch.nparams), merge=(1, 0, 1, 0.3))
    net = symflow.Net(arch, rng.normal(size=(N, 2)), rng.normal(size=N), **extra)
    _, _, H = net.loss_gradient_hessian(p)
    assert np.array_equal(net.hessian(p), H)
    if regularised:
        plain = symflow.Net(arch, net.X, net.Y)
        assert np.abs(H - plain.hessian(p)).max() > 1e-3 * np.abs(H).max()


def test_net_owns_copies_of_its_data():
    """Changing the caller's arrays after construction must not change the Net's loss."""
    arch = symflow.MLP(1, [(2, "tanh", True), (1, "identity", True)])
    rng = np.random.default_rng(0)
    X, Y, w = rng.normal(size=(6, 1)), rng.normal(size=6), rng.uniform(size=6)
    net = symflow.Net(arch, X, Y, weights=w)
    p = arch.random_params(seed=0)
    before = net.loss(p)
    X[:], Y[:], w[:] = 0.0, 0.0, 0.0
    assert net.loss(p) == before
    assert not net.X.flags.writeable


@pytest.mark.parametrize("layers, softmax, threads", [
    ([(4, "tanh", True), (3, "softmax", True)], True, 1),
    ([(4, "g", False), (3, "silu", True), (2, "sigmoid", True)], False, 1),  # Phi can be < 0
    # The C path's tiles of 3 rows by 4 columns at P = 31, 35, 121 and 36: the first row
    # tile starts at row -2, -1, -2 and 0 (zero rows there), the last column tile has 3,
    # 3, 1 and 4 columns; softmax (3 outputs) gives 96 columns per update, two slices.
    # P = 121 on two threads, each with its own triangle (the tiles on the diagonal also
    # write above it).
    ([(24, "softplus", True), (1, "identity", True)], False, 2),
    ([(7, "softplus", True), (1, "identity", True)], False, 1),
])
def test_c_and_blas_hessian_paths_agree(layers, softmax, threads, monkeypatch):
    """The Gauss-Newton part summed by symflow's C loops (used for small P, and without
    SciPy's BLAS) and by BLAS dsyrk in chunks must give the same Hessian up to round-off
    (and exactly symmetric).  Chunks of 64 samples per range go to the dot-product
    loops or dsyrk; the last columns of each range (at most 32) to the outer-product
    loops in both."""
    import symflow.problems as problems

    arch = symflow.MLP(3, layers)
    rng = np.random.default_rng(5)
    n = 157
    X = rng.normal(size=(n, 3))
    Y = rng.integers(0, 3, n) if softmax else rng.uniform(size=(n, layers[-1][0]))
    monkeypatch.setattr(problems, "_MIN_SAMPLES_PER_THREAD", 20)
    monkeypatch.setattr(problems, "_MIN_WORK_PER_THREAD", {"gradient": 1, "hessian": 1})
    net = symflow.Net(arch, X, Y, weights=rng.uniform(size=n), threads=threads)
    p = arch.random_params(seed=2) + 0.5 * rng.normal(size=arch.nparams)
    assert problems._parts(n, threads, arch.nparams**2, "hessian") == threads
    monkeypatch.setattr(problems, "_BLAS_HESSIAN", False)
    c_loops = net.loss_gradient_hessian(p)
    monkeypatch.setattr(problems, "_BLAS_HESSIAN", True)
    monkeypatch.setattr(problems, "_BLAS_HESSIAN_MIN_P", 1)   # dsyrk at every P
    # chunks of 64 samples (64 columns per output): dsyrk for each, several per range
    monkeypatch.setattr(problems, "_CHUNK_BYTES", 8 * arch.nparams * 64 * layers[-1][0])
    blas = net.loss_gradient_hessian(p)
    assert blas[0] == pytest.approx(c_loops[0], rel=1e-14)
    assert np.max(np.abs(blas[1] - c_loops[1])) <= 1e-14 * np.max(np.abs(c_loops[1]))
    assert np.max(np.abs(blas[2] - c_loops[2])) <= 1e-13 * np.max(np.abs(c_loops[2]))
    assert np.array_equal(blas[2], blas[2].T) and np.array_equal(c_loops[2], c_loops[2].T)

"""The architecture spec: identity (immutability, equality, hashing, repr, pickle),
sizes, the flat parameter layout, names, random initialisation and the text form.

Nothing here compiles: specs are pure data, so these tests are fast.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from scipy import stats

import symflow
from symflow import MLP


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Nothing here should compile, but if it ever does it must not touch ~/.cache.
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(tmp_path / "cache"))


def deep():
    """Three layers, mixed biases, two outputs."""
    return MLP(3, [(4, "tanh", True), (5, "relu", False), (2, "identity", True)])


# ---------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["din", "layers", "key", "foo", "_din", "_layers", "_key"])
def test_setting_any_attribute_raises(name):
    arch = deep()
    before = (arch.key, hash(arch))
    with pytest.raises(AttributeError):
        setattr(arch, name, 7)
    assert (arch.key, hash(arch)) == before


def test_layers_are_frozen_and_a_tuple():
    arch = deep()
    assert isinstance(arch.layers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.layers[0].width = 9
    with pytest.raises(TypeError):
        arch.layers[0] = arch.layers[1]


def test_input_list_is_copied():
    layers = [(3, "tanh", True), (1, "identity", True)]
    arch = MLP(2, layers)
    layers.append((5, "relu", True))
    layers[0] = (9, "relu", False)
    assert arch == MLP(2, [(3, "tanh", True), (1, "identity", True)])
    assert arch.depth == 2


def test_hashable_and_usable_as_dict_key():
    a, b = deep(), deep()
    assert a is not b
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert len({a, b, MLP(3, [(4, "tanh", True), (1, "identity", True)])}) == 2


@pytest.mark.parametrize(
    "other",
    [
        # default bias is True; lists and tuples; numpy integers; Layer objects
        lambda: MLP(2, [(3, "tanh"), (1, "identity")]),
        lambda: MLP(np.int64(2), [[np.int32(3), "tanh", True], (1, "identity", True)]),
        lambda: MLP(2, tuple(MLP(2, [(3, "tanh", True), (1, "identity", True)]).layers)),
        lambda: MLP(2, [(3, " tanh ", True), (1, "identity", np.bool_(True))]),
    ],
)
def test_equivalent_spellings_are_equal_and_hash_equal(other):
    ref = MLP(2, [(3, "tanh", True), (1, "identity", True)])
    b = other()
    assert b == ref and hash(b) == hash(ref) and b.key == ref.key


@pytest.mark.parametrize(
    "other",
    [
        MLP(2, [(3, "tanh", False), (1, "identity", True)]),  # bias flag
        MLP(2, [(3, "tanh", True), (1, "identity", False)]),
        MLP(2, [(3, "relu", True), (1, "identity", True)]),  # activation
        MLP(2, [(4, "tanh", True), (1, "identity", True)]),  # width
        MLP(3, [(3, "tanh", True), (1, "identity", True)]),  # input dimension
        MLP(2, [(3, ("tanh", "tanh", "relu"), True), (1, "identity", True)]),  # one neuron
        MLP(2, [(3, "x*tanh(x)", True), (1, "identity", True)]),
    ],
)
def test_different_specs_are_unequal(other):
    ref = MLP(2, [(3, "tanh", True), (1, "identity", True)])
    assert other != ref
    assert other.key != ref.key
    assert other.fingerprint != ref.fingerprint


def test_not_equal_to_other_types():
    arch = deep()
    assert arch != arch.key
    assert arch != "3 | 4 tanh | 5 relu nobias | 2 identity"
    assert (arch == None) is False  # noqa: E711


@pytest.mark.parametrize("act", ["tanh", "x*tanh(x)", "softplus"])
def test_per_neuron_tuple_of_identical_activations_equals_single(act):
    single = MLP(2, [(3, act, True), (1, "identity", True)])
    tup = MLP(2, [(3, (act,) * 3, True), (1, "identity", True)])
    lst = MLP(2, [(3, [act] * 3, True), (1, "identity", True)])
    assert tup == single == lst
    assert hash(tup) == hash(single)
    assert tup.key == single.key and repr(tup) == repr(single) and tup.slug == single.slug
    assert not isinstance(tup.layers[0].activation, tuple)


def test_expression_strings_are_canonicalised():
    a = MLP(1, [(2, "x*tanh(x)", True)])
    b = MLP(1, [(2, "  x *   tanh( x ) ", True)])
    assert a == b and hash(a) == hash(b)


def test_per_neuron_activations_listed_per_neuron():
    arch = MLP(3, [(3, ("relu", "tanh", "relu"), True), (1, "identity", True)])
    assert arch.layers[0].activations() == ("relu", "tanh", "relu")
    assert arch.layers[1].activations() == ("identity",)


# Every kind of activation a spec can hold, for repr and pickle.
ROUND_TRIP_SPECS = [
    MLP(2, [(10, "softplus", True), (1, "identity", True)]),
    MLP(3, [(4, "tanh", True), (5, "relu", False), (2, "identity", True)]),
    MLP(3, [(3, ("relu", "tanh", "x*sigmoid(x)"), False), (1, "identity", True)]),
    MLP(1, [(4, "x**3/3 - 0.5*x + exp(-x**2)", True), (3, "softmax", True)]),
    MLP(5, [(2, "erf", True), (2, "normal_cdf", False), (1, "g", True)]),
]


@pytest.mark.parametrize("arch", ROUND_TRIP_SPECS, ids=lambda a: a.slug)
def test_repr_round_trips_via_eval(arch):
    namespace: dict = {}
    exec("from symflow import MLP", namespace)
    again = eval(repr(arch), namespace)
    assert again == arch and hash(again) == hash(arch) and repr(again) == repr(arch)


@pytest.mark.parametrize("arch", ROUND_TRIP_SPECS, ids=lambda a: a.slug)
def test_pickle_round_trip(arch):
    again = pickle.loads(pickle.dumps(arch))
    assert again == arch and hash(again) == hash(arch) and again.key == arch.key
    assert again.nparams == arch.nparams
    with pytest.raises(AttributeError):
        again.din = 4


def test_pickle_round_trip_sympy_activation():
    sp = pytest.importorskip("sympy")
    x = sp.Symbol("x", real=True)
    arch = MLP(2, [(3, x * sp.tanh(x), True), (1, "identity", True)])
    again = pickle.loads(pickle.dumps(arch))
    assert again == arch and hash(again) == hash(arch)


# ---------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------
def test_sizes_by_hand():
    arch = deep()
    # layer 1: 4*3 + 4 bias, layer 2: 5*4 (no bias), layer 3: 2*5 + 2 bias
    assert [arch.layer_nparams(i) for i in (1, 2, 3)] == [16, 20, 12]
    assert arch.offsets == (0, 16, 36, 48)
    assert arch.nparams == 48
    assert arch.widths == (3, 4, 5, 2)
    assert arch.din == 3 and arch.dout == 2 and arch.depth == 3
    assert arch.softmax is False
    assert [ly.bias for ly in arch.layers] == [True, False, True]


def test_reference_grid_sizes():
    # design.md: d=2, one softplus layer of k with bias, linear output with bias: P = 4k + 1
    for k, P in [(10, 41), (50, 201), (100, 401)]:
        assert MLP(2, [(k, "softplus", True), (1, "identity", True)]).nparams == P


def test_softmax_flag():
    arch = MLP(4, [(6, "tanh", True), (3, "softmax", True)])
    assert arch.softmax is True and arch.dout == 3
    assert arch.nparams == 6 * 4 + 6 + 3 * 6 + 3
    assert MLP(4, [(3, "sigmoid", True)]).softmax is False


# ---------------------------------------------------------------------------------------
# parameter layout (torch.nn.Linear: weight (out, in) row-major, then bias)
# ---------------------------------------------------------------------------------------
def _blocks(arch):
    """Distinct values everywhere, so every position is identifiable."""
    blocks, start = [], 1.0
    for li, ly in enumerate(arch.layers, start=1):
        nin = arch.widths[li - 1]
        W = start + np.arange(ly.width * nin, dtype=float).reshape(ly.width, nin)
        start += W.size
        b = None
        if ly.bias:
            b = -(start + np.arange(ly.width, dtype=float))
            start += ly.width
        blocks.append((W, b))
    return blocks


def test_flat_layout_is_torch_linear_order():
    arch = deep()
    blocks = _blocks(arch)
    p = arch.flatten(blocks)
    assert p.dtype == np.float64 and p.shape == (48,)
    (W1, b1), (W2, b2), (W3, b3) = blocks
    assert b2 is None
    # written out position by position, not with ravel, as in torch's
    # parameters_to_vector([lin1.weight, lin1.bias, lin2.weight, lin3.weight, lin3.bias])
    expected = []
    expected += [W1[i, j] for i in range(4) for j in range(3)] + list(b1)
    expected += [W2[i, j] for i in range(5) for j in range(4)]
    expected += [W3[i, j] for i in range(2) for j in range(5)] + list(b3)
    np.testing.assert_array_equal(p, expected)
    # a few positions spelled out: W1[1, 2] is the 6th entry, b1[0] follows W1
    assert p[1 * 3 + 2] == W1[1, 2]
    assert p[12] == b1[0]
    assert p[16] == W2[0, 0] and p[16 + 4 * 2 + 3] == W2[2, 3]
    assert p[36 + 5 + 1] == W3[1, 1] and p[46] == b3[0] and p[47] == b3[1]


def test_unflatten_inverts_flatten():
    arch = deep()
    blocks = _blocks(arch)
    p = arch.flatten(blocks)
    back = arch.unflatten(p)
    assert len(back) == 3
    for (W, b), (W0, b0) in zip(back, blocks):
        np.testing.assert_array_equal(W, W0)
        if b0 is None:
            assert b is None
        else:
            np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(arch.flatten(back), p)
    q = np.random.default_rng(3).normal(size=arch.nparams)
    np.testing.assert_array_equal(arch.flatten(arch.unflatten(q)), q)


def test_unflatten_does_not_alias_caller_array_of_other_dtype():
    arch = MLP(1, [(2, "tanh", True)])
    p = np.arange(4, dtype=np.int64)
    (W, b), = arch.unflatten(p)
    assert W.dtype == np.float64 and b.dtype == np.float64
    np.testing.assert_array_equal(W.ravel(), [0.0, 1.0])
    np.testing.assert_array_equal(b, [2.0, 3.0])


def test_parameter_names_follow_layout():
    arch = MLP(2, [(2, "tanh", True), (1, "identity", False)])
    assert arch.parameter_names() == [
        "W1_0_0", "W1_0_1", "W1_1_0", "W1_1_1", "b1_0", "b1_1", "W2_0_0", "W2_0_1",
    ]


def test_parameter_names_point_at_the_right_values():
    arch = deep()
    blocks = _blocks(arch)
    p = arch.flatten(blocks)
    names = arch.parameter_names()
    assert len(names) == arch.nparams == len(set(names))
    for name, value in zip(names, p):
        kind, (layer, *rest) = name[0], map(int, name[1:].split("_"))
        W, b = blocks[layer - 1]
        assert value == (W[rest[0], rest[1]] if kind == "W" else b[rest[0]]), name


# ---------------------------------------------------------------------------------------
# random initialisation
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["glorot_normal", "glorot_uniform"])
def test_random_params_reproducible(scheme):
    arch = deep()
    a = arch.random_params(seed=7, scheme=scheme)
    b = arch.random_params(seed=7, scheme=scheme)
    c = arch.random_params(seed=8, scheme=scheme)
    assert a.dtype == np.float64 and a.shape == (arch.nparams,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1 = arch.random_params(seed=np.random.default_rng(7), scheme=scheme)
    g2 = arch.random_params(seed=np.random.default_rng(7), scheme=scheme)
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(arch.random_params(scheme=scheme), arch.random_params(scheme=scheme))


def test_random_params_default_scheme_is_glorot_normal_and_biases_zero():
    arch = deep()
    np.testing.assert_array_equal(arch.random_params(seed=1),
                                  arch.random_params(seed=1, scheme="glorot_normal"))
    for W, b in arch.unflatten(arch.random_params(seed=1)):
        assert np.all(W != 0)
        assert b is None or np.all(b == 0)


# A large layer: fan_in 500, fan_out 300, n = 150 000 weights, target variance
# 2/(500+300) = 0.0025 for both schemes.  Relative standard error of the sample
# variance is sqrt(2/n) = 0.37 % (normal) and sqrt(0.8/n) = 0.23 % (uniform), so a
# 2 % band is > 5 standard errors wide yet still rejects e.g. 2/fan_in (=0.004) or
# 1/(fan_in+fan_out).  The second layer (300 -> 10, n = 3000) has target 2/310; its
# relative standard error is at most sqrt(2/3000) = 2.6 %, so a 15 % band is ~6 sigma
# and still separates it from the first layer's variance (factor 2.6).
BIG = MLP(500, [(300, "tanh", True), (10, "identity", True)])


@pytest.mark.parametrize("scheme", ["glorot_normal", "glorot_uniform"])
def test_random_params_glorot_variance(scheme):
    (W1, b1), (W2, b2) = BIG.unflatten(BIG.random_params(seed=2024, scheme=scheme))
    assert W1.shape == (300, 500) and W2.shape == (10, 300)
    np.testing.assert_array_equal(b1, 0.0)
    np.testing.assert_array_equal(b2, 0.0)
    for W, fan_in, fan_out, rel in [(W1, 500, 300, 0.02), (W2, 300, 10, 0.15)]:
        target = 2.0 / (fan_in + fan_out)
        # mean: standard error sqrt(target/n); allow 5 of them
        assert abs(W.mean()) < 5 * np.sqrt(target / W.size)
        assert W.var() == pytest.approx(target, rel=rel)


def test_glorot_normal_is_gaussian():
    (W1, _), _ = BIG.unflatten(BIG.random_params(seed=11, scheme="glorot_normal"))
    z = W1.ravel() / np.sqrt(2.0 / 800)
    # Kurtosis of a Gaussian is 3 (uniform: 1.8); standard error sqrt(24/n) = 0.013.
    assert stats.kurtosis(z, fisher=False) == pytest.approx(3.0, abs=0.08)
    # Against the exact target distribution (fixed seed, so deterministic).
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_glorot_uniform_bounds_and_shape():
    (W1, _), _ = BIG.unflatten(BIG.random_params(seed=12, scheme="glorot_uniform"))
    a = np.sqrt(6.0 / 800)
    assert np.abs(W1).max() <= a
    # with 150 000 draws the extremes come within a*1e-3 of the bound with
    # probability 1 - 2 * (1 - 5e-4)^150000 ~ 1 - 1e-32
    assert W1.max() > a * (1 - 1e-3) and W1.min() < -a * (1 - 1e-3)
    assert stats.kurtosis(W1.ravel(), fisher=False) == pytest.approx(1.8, abs=0.05)
    assert stats.kstest(W1.ravel(), "uniform", args=(-a, 2 * a)).pvalue > 1e-3


# ---------------------------------------------------------------------------------------
# compact text form
# ---------------------------------------------------------------------------------------
def test_from_string_with_nobias():
    arch = MLP.from_string("2 | 10 softplus | 1 identity nobias")
    assert arch == MLP(2, [(10, "softplus", True), (1, "identity", False)])
    assert arch.nparams == 40


def test_from_string_per_neuron():
    arch = MLP.from_string("3 | 3 relu;tanh;relu | 1")
    assert arch == MLP(3, [(3, ("relu", "tanh", "relu"), True), (1, "identity", True)])
    assert arch.layers[0].activations() == ("relu", "tanh", "relu")
    assert arch.layers[1].activation == "identity" and arch.layers[1].bias is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2|10 softplus|1 identity", MLP(2, [(10, "softplus", True), (1, "identity", True)])),
        ("  2 |  10   softplus bias | 1  ", MLP(2, [(10, "softplus"), (1, "identity")])),
        ("3 | 3 relu ; relu ; relu | 1", MLP(3, [(3, "relu"), (1, "identity")])),
        ("1 | 4 x*tanh(x) nobias | 2 softmax",
         MLP(1, [(4, "x*tanh(x)", False), (2, "softmax", True)])),
    ],
)
def test_from_string_variants(text, expected):
    assert MLP.from_string(text) == expected


def test_top_level_exports():
    assert symflow.MLP is MLP
    for name in ["SymflowError", "SpecError", "ActivationError", "DataError",
                 "ParameterError", "CompilationError", "CompilerNotFoundError"]:
        assert issubclass(getattr(symflow, name), symflow.SymflowError)

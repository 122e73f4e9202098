"""The kernels' CPython entry point (templates/python_entry.h) against the cffi call of
the same kernel: the same bits for every kind, every accepted form of ``p`` and every
error, and no references leaked."""

import sys
import weakref

import numpy as np
import pytest

import symflow
from symflow.errors import ParameterError
from symflow.problems import _python_entry


def _nets(arch, X, Y, **options):
    """The same Net twice: with the entry point, and with it switched off (cffi)."""
    fast = symflow.Net(arch, X, Y, **options)
    slow = symflow.Net(arch, X, Y, **options)
    assert fast._fixed[9] is not None, "the module was built without the entry point"
    slow._fixed = slow._fixed[:9] + (None, None)
    return fast, slow


def _same(a, b):
    """Equal bits, or both None."""
    if a is None or b is None:
        assert a is None and b is None
    elif isinstance(a, float):
        assert isinstance(b, float) and a == b
    else:
        assert type(a) is np.ndarray and a.dtype == np.float64 and a.flags.c_contiguous
        assert a.flags.writeable and a.flags.owndata
        assert np.array_equal(a, b)


CASES = [
    # one hidden layer into one output (the fused gradient path), no weights
    ([(6, "softplus", True), (1, "identity", True)], False, None, {}),
    # two hidden layers, two outputs, weights, maxnorm; N = 1000 splits over 2 threads
    ([(5, "tanh", True), (4, "softplus", False), (2, "identity", True)], False, "w",
     {"maxnorm": 0.01, "threads": 2}),
    # softmax with merge (its regulariser), one thread
    ([(5, "softplus", True), (3, "softmax", True)], True, None,
     {"merge": (1, 0, 2, 0.3), "threads": 1}),
]


@pytest.mark.parametrize("layers, softmax, weights, options", CASES)
@pytest.mark.parametrize("n", [10, 1000])
@pytest.mark.parametrize("dsyrk", [False, True])
def test_entry_point_and_cffi_give_the_same_bits(layers, softmax, weights, options, n, dsyrk,
                                                  monkeypatch):
    """N = 1000 splits over two threads where the case has them; dsyrk for the
    Gauss-Newton part at any P (else symflow's C loops up to P = 99)."""
    import symflow.problems as problems

    if dsyrk:
        monkeypatch.setattr(problems, "_BLAS_HESSIAN_MIN_P", 1)
    arch = symflow.MLP(3, layers)
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, 3))
    Y = rng.integers(0, layers[-1][0], n) if softmax else rng.normal(size=(n, layers[-1][0]))
    if weights:
        options = dict(options, weights=rng.uniform(size=n))
    fast, slow = _nets(arch, X, Y, **options)
    if options.get("threads") == 2 and n == 1000:  # the ranges reach the entry point
        P = arch.nparams
        assert problems._parts(n, 2, P, "gradient") == problems._parts(n, 2, P * P, "hessian") == 2
    p = arch.random_params(seed=4) + 0.3 * rng.normal(size=arch.nparams)
    for kind in range(4):
        for a, b in zip(fast._run(kind, "test", p), slow._run(kind, "test", p)):
            _same(a, b)
    _same(fast.loss(p), slow.loss(p))
    _same(fast.hessian(p), slow.hessian(p))
    l, g, h = fast.loss_gradient_hessian(p)
    assert np.array_equal(h, h.T)
    # the entry point does not keep p or its results
    refs = sys.getrefcount(p)
    for _ in range(50):
        out = fast.loss_gradient_hessian(p)
    assert sys.getrefcount(p) == refs
    gone = [weakref.ref(x) for x in out[1:]]
    del out, l, g, h
    assert [ref() for ref in gone] == [None, None]


def test_other_forms_of_p_are_converted_once_and_give_the_same_bits():
    arch = symflow.MLP(2, [(4, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(3)
    fast, slow = _nets(arch, rng.normal(size=(20, 2)), rng.normal(size=20), threads=1)
    p = arch.random_params(seed=1)
    want = slow.hessian(p)
    wide = np.zeros(2 * p.size)
    wide[::2] = p

    class Sub(np.ndarray):
        pass

    frozen = p.copy()
    frozen.flags.writeable = False
    forms = [p.tolist(), p.astype(">f8"), wide[::2], frozen, p.view(Sub), np.asfortranarray(p)]
    for form in forms:
        _same(fast.hessian(form), want)
    # float32 rounds p: the same as converting it first
    _same(fast.hessian(p.astype(np.float32)), slow.hessian(p.astype(np.float32).astype(float)))


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros(5), "has 17 parameters"),
    (np.zeros((17, 1)), "one flat 1-D vector"),
    (np.full(17, "a"), "real float64 vector"),
])
def test_wrong_p_raises_the_named_error(bad, fragment):
    arch = symflow.MLP(2, [(4, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(3)
    fast, _ = _nets(arch, rng.normal(size=(20, 2)), rng.normal(size=20))
    with pytest.raises(ParameterError, match=fragment):
        fast.hessian(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_parameter_is_named_by_both_paths(value):
    arch = symflow.MLP(2, [(4, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(3)
    for net in _nets(arch, rng.normal(size=(20, 2)), rng.normal(size=20)):
        p = arch.random_params(seed=1)
        p[5] = value
        for call in (net.loss, net.gradient, net.hessian, net.loss_gradient_hessian):
            with pytest.raises(ParameterError, match=r"parameter 5 \(W1_2_1\) is"):
                call(p)


def test_entry_point_checks_its_arguments():
    arch = symflow.MLP(2, [(4, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(3)
    net = symflow.Net(arch, rng.normal(size=(20, 2)), rng.normal(size=20))
    run, context = net._fixed[9], net._fixed[10]
    p = arch.random_params(seed=1)
    assert type(run(context, 1, p, 1, 0, 1 << 20)) is tuple
    assert run(context, 1, p.astype(np.float32), 1, 0, 1 << 20) is None
    assert run(context, 1, p[:-1].copy(), 1, 0, 1 << 20) is None
    with pytest.raises(ValueError, match="out of range"):
        run(context, 4, p, 1, 0, 1 << 20)
    with pytest.raises(ValueError, match="out of range"):
        run(context, 1, p, 0, 0, 1 << 20)
    with pytest.raises(TypeError):
        run(context, 1, p)
    with pytest.raises(ValueError):   # not the context capsule
        run(object(), 1, p, 1, 0, 1 << 20)
    entry = _python_entry(symflow.build.load(arch))
    with pytest.raises(ValueError, match="X must be a C-contiguous float64 array"):
        entry.context(np.zeros((20, 2), np.float32), np.zeros(20), None, 0, 0)
    with pytest.raises(ValueError, match="Y must be"):
        entry.context(np.zeros((20, 2)), np.zeros(19), None, 0, 0)
    with pytest.raises(ValueError, match="w must be"):
        entry.context(np.zeros((20, 2)), np.zeros(20), np.zeros(3), 0, 0)

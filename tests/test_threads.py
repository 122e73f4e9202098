"""Splitting the samples over threads changes nothing but round-off."""

import numpy as np
import pytest

import symflow
from symflow.problems import _MIN_SAMPLES_PER_THREAD, _ranges


@pytest.mark.parametrize("n", [1, 2047, 4096, 4097, 10001])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_ranges_cover_every_sample_once(n, threads):
    ranges = _ranges(0, n, threads)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a < b for a, b in ranges)
    assert all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
    assert len(ranges) == max(1, min(threads, n // _MIN_SAMPLES_PER_THREAD))


def test_threaded_results_match_single_thread():
    # Three threads over N = 3 * 2048 + 5 samples, softmax output (Gm rows used) and weights.
    arch = symflow.MLP(3, [(5, "tanh", True), (4, "softplus", False), (3, "softmax", True)])
    rng = np.random.default_rng(7)
    n = 3 * _MIN_SAMPLES_PER_THREAD + 5
    X, labels, w = rng.normal(size=(n, 3)), rng.integers(0, 3, n), rng.uniform(size=n)
    p = arch.random_params(seed=3)
    one = symflow.Net(arch, X, labels, weights=w, threads=1)
    three = symflow.Net(arch, X, labels, weights=w, threads=3)
    l1, g1, h1 = one.loss_gradient_hessian(p)
    l3, g3, h3 = three.loss_gradient_hessian(p)
    # Only the order of the sums over samples differs: a few ulp of the largest terms.
    assert l3 == pytest.approx(l1, rel=1e-14)
    assert three.loss(p) == pytest.approx(l1, rel=1e-14)
    assert np.max(np.abs(g3 - g1)) <= 1e-13 * np.max(np.abs(g1))
    assert np.max(np.abs(three.gradient(p) - g1)) <= 1e-13 * np.max(np.abs(g1))
    assert np.max(np.abs(h3 - h1)) <= 1e-13 * np.max(np.abs(h1))
    assert np.array_equal(h3, h3.T)


def test_threads_argument_is_validated(monkeypatch):
    arch = symflow.MLP(1, [(1, "identity", True)])
    with pytest.raises(symflow.ParameterError, match="threads"):
        symflow.Net(arch, np.zeros((2, 1)), np.zeros(2), threads=0)
    monkeypatch.setenv("SYMFLOW_NUM_THREADS", "zero")
    net = symflow.Net(arch, np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(symflow.ParameterError, match="SYMFLOW_NUM_THREADS"):
        net.loss(np.zeros(2))

"""Splitting the samples over threads changes nothing but round-off."""

import os
import select
import signal

import numpy as np
import pytest

import symflow
from symflow.problems import _MIN_SAMPLES_PER_THREAD, _MIN_WORK_PER_THREAD, _parts


@pytest.mark.parametrize("n", [1, 31, 64, 255, 4097, 10001])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("work, kind", [(41, "gradient"), (401, "gradient"), (41**2, "hessian"),
                                        (401**2, "hessian")])
def test_one_range_per_thread_with_enough_work_each(n, threads, work, kind):
    parts = _parts(n, threads, work, kind)
    assert 1 <= parts <= threads
    enough = lambda m: m >= _MIN_SAMPLES_PER_THREAD and m * work >= _MIN_WORK_PER_THREAD[kind]
    assert parts == 1 or enough(n // parts)
    assert parts == threads or not enough(n // (parts + 1))


def test_threaded_results_match_single_thread():
    # Three threads over N = 6149 samples, softmax output (Gm rows used) and weights.
    arch = symflow.MLP(3, [(5, "tanh", True), (4, "softplus", False), (3, "softmax", True)])
    rng = np.random.default_rng(7)
    n = 3 * 2048 + 5
    P = arch.nparams
    assert _parts(n, 3, P, "gradient") == 3 and _parts(n, 3, P * P, "hessian") == 3
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
    with pytest.raises(symflow.ParameterError, match="SYMFLOW_NUM_THREADS"):
        symflow.Net(arch, np.zeros((2, 1)), np.zeros(2))
    # set after the Net was made: reported by the first call that could split (N >= 64)
    monkeypatch.delenv("SYMFLOW_NUM_THREADS")
    net = symflow.Net(arch, np.zeros((64, 1)), np.zeros(64))
    monkeypatch.setenv("SYMFLOW_NUM_THREADS", "0")
    with pytest.raises(symflow.ParameterError, match="SYMFLOW_NUM_THREADS"):
        net.loss(np.zeros(2))


def _threaded_net(n=3000, threads=2):
    arch = symflow.MLP(2, [(12, "softplus", True), (2, "identity", True)])
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    net = symflow.Net(arch, X, Y, threads=threads)
    p = arch.random_params(seed=4)
    P = arch.nparams
    assert _parts(n, threads, P, "gradient") == threads
    assert _parts(n, threads, P * P, "hessian") == threads
    return net, p


def test_threaded_results_do_not_depend_on_timing():
    # Ranges are summed in their order whichever thread ran them: calls with the workers
    # awake, asleep (the caller then runs their ranges) and after a pause give the same bits.
    import time

    net, p = _threaded_net(threads=3)
    ref = net.loss_gradient_hessian(p)
    ref_g = net.gradient(p)   # the gradient kernel's own sums (per vector lane), not ref[1]'s
    for pause in (0.0, 0.05, 0.0, 0.2):
        time.sleep(pause)
        out = net.loss_gradient_hessian(p)
        assert out[0] == ref[0]
        assert np.array_equal(out[1], ref[1]) and np.array_equal(out[2], ref[2])
        assert np.array_equal(net.gradient(p), ref_g)


def test_back_to_back_calls_of_mixed_kinds_give_the_same_bits():
    # A worker zeroes its range buffer for the next call right after the caller has added
    # it in, sized for the kind it just ran, while the caller may already be posting the
    # next range (sf_worker_prezero): calls back to back, alternating Hessians with
    # smaller kinds, must neither deadlock nor read a stale buffer.  ~1.5 s of calls
    # (tens of thousands of hand-overs); a hang fails the watchdog instead of CI's clock.
    import threading
    import time

    arch = symflow.MLP(2, [(10, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(5)
    n = 500
    net = symflow.Net(arch, rng.normal(size=(n, 2)), rng.normal(size=(n, 1)), threads=2)
    p = arch.random_params(seed=6)
    P = arch.nparams
    assert _parts(n, 2, P, "gradient") == 2 and _parts(n, 2, P * P, "hessian") == 2
    ref = (net.hessian(p), net.loss_and_gradient(p), net.loss(p))
    bad = []

    def hammer():
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end and not bad:
            h = net.hessian(p)
            loss, g = net.loss_and_gradient(p)
            h2 = net.hessian(p)
            l2 = net.loss(p)
            if not (np.array_equal(h, ref[0]) and np.array_equal(h2, ref[0])
                    and loss == ref[1][0] and np.array_equal(g, ref[1][1]) and l2 == ref[2]):
                bad.append((h, loss, g, h2, l2))

    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "threaded calls hung"
    assert not bad


def test_concurrent_calls_from_python_threads():
    # Only one call uses the workers at a time; the others run their ranges on their own
    # thread, summed in the same order, so every call returns the same bits.
    from concurrent.futures import ThreadPoolExecutor

    net, p = _threaded_net()
    g_ref, h_ref = net.gradient(p), net.hessian(p)

    def work(i):
        return net.gradient(p) if i % 2 else net.hessian(p)

    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(work, range(40)))
    for i, out in enumerate(outs):
        assert np.array_equal(out, g_ref if i % 2 else h_ref)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_threads_work_in_a_forked_child():
    # The parent's workers do not exist in a forked child; the child starts its own.
    net, p = _threaded_net()
    ref = net.gradient(p)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        try:
            ok = np.array_equal(net.gradient(p), ref) and np.array_equal(net.gradient(p), ref)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        answer = os.read(read, 1) if ready else b"timeout"
    finally:
        os.close(read)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert answer == b"1"


_LARGE_P_CONCURRENT = r"""
import sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import symflow
from symflow.problems import _MAX_THREADED_HESSIAN_P, _parts
arch = symflow.MLP(1, [(483, "tanh", True), (1, "identity", True)])
P = arch.nparams
assert P * P + P + 1 > 2 ** 21 and P <= _MAX_THREADED_HESSIAN_P and _parts(64, 2, P * P, "hessian") == 2
rng = np.random.default_rng(2)
net = symflow.Net(arch, rng.normal(size=(64, 1)), rng.normal(size=(64, 1)), threads=2)
p = arch.random_params(seed=1)
ref = net.loss_gradient_hessian(p)
with ThreadPoolExecutor(2) as ex:
    outs = list(ex.map(lambda i: net.loss_gradient_hessian(p), range(6)))
bad = sum(not (o[0] == ref[0] and np.array_equal(o[1], ref[1]) and np.array_equal(o[2], ref[2]))
          for o in outs)
print("bad", bad)
sys.exit(1 if bad else 0)
"""


def test_concurrent_calls_with_a_range_buffer_above_the_workspace_limit():
    # A call that finds the workers taken runs the second range itself into its own
    # buffer, which at P >= 1449 is above the kernels' workspace limit (SF_SCRATCH_KEEP,
    # 2^21 doubles).  The kernel must not free that buffer at its end (it did from
    # 34f3f21 on: sf_run then read freed memory, a crash or a wrong loss).  In a child
    # process, so that a crash fails this test rather than the session.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _LARGE_P_CONCURRENT], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "bad 0" in out.stdout

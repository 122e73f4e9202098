"""train_many: process pool and Dask give exactly the sequential results, in order."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

import numpy as np
import pytest

from symflow.dynamics import train
from symflow.parallel import FailedStart, train_many
from toyproblem import teacher_student

# iteration-bounded runs (no wall-clock limits), so every worker does exactly the
# same arithmetic as the sequential run and results must agree bit for bit
OPTS = dict(maxT=50.0, maxiterations_ode=400, maxiterations_optim=30, maxtime_ode=1e9,
            maxtime_optim=1e9, n_samples_trajectory=20, verbosity=0)


@pytest.fixture(scope="module")
def setup():
    prob, pt = teacher_student(seed=2, d=2, k_teacher=2, k_student=2, N=80)
    rng = np.random.default_rng(11)
    inits = [pt + 0.3 * rng.standard_normal(pt.size) for _ in range(3)]
    sequential = [train(prob, p, **OPTS) for p in inits]
    return prob, inits, sequential


def _same_run(a, b):
    """Equal in everything but wall-clock timings."""
    assert a.ok and b.ok
    for name in ("x", "init", "ode_x", "trajectory_times", "trajectory_points",
                 "loss_curve_loss", "refine_gnorm", "hessian_eigenvalues"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.loss, a.gnorm, a.converged, a.summary) == (b.loss, b.gnorm, b.converged, b.summary)
    for key in a.phases:
        pa, pb = a.phases[key], b.phases[key]
        assert (pa.stop_reason, pa.iterations, pa.evaluations) == (pb.stop_reason, pb.iterations,
                                                                    pb.evaluations)


def test_process_pool_equals_sequential_and_keeps_order(setup):
    prob, inits, sequential = setup
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        # reversed inputs come back reversed: order follows the input, not completion
        out = train_many(prob, inits[::-1], executor=ex, **OPTS)
    for a, b in zip(out, sequential[::-1]):
        _same_run(a, b)


def test_default_pool_ships_compiled_net_and_reports_a_failing_start(setup):
    # one pool for both checks: spawning workers costs seconds on 2 cores
    symflow = pytest.importorskip("symflow")
    prob, inits, _ = setup
    arch = symflow.MLP(2, [(2, "softplus", True), (1, "identity", True)])
    net = symflow.Net(arch, prob.X, prob.y)
    sequential = [train(net, p, **OPTS) for p in inits[:2]]
    bad = np.zeros(prob.nparams + 1)  # wrong length: train raises ParameterError
    out = train_many(net, [inits[0], bad, inits[1]], max_workers=2, **OPTS)
    _same_run(out[0], sequential[0])
    _same_run(out[2], sequential[1])
    assert isinstance(out[1], FailedStart) and not out[1].ok
    assert out[1].index == 1 and "ParameterError" in out[1].error and "p0 has" in out[1].error


def test_dask_local_cluster_equals_sequential(setup):
    distributed = pytest.importorskip("dask.distributed")
    symflow = pytest.importorskip("symflow")
    prob, inits, sequential = setup
    arch = symflow.MLP(2, [(2, "softplus", True), (1, "identity", True)])
    net = symflow.Net(arch, prob.X, prob.y)
    net_sequential = [train(net, p, **OPTS) for p in inits[:2]]
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ex = client.get_executor()
        out = train_many(prob, inits, executor=ex, **OPTS)
        out_net = train_many(net, inits[:2], executor=ex, **OPTS)
        bad = train_many(prob, [np.ones(3)], executor=ex, **OPTS)
    for a, b in zip(out, sequential):
        _same_run(a, b)
    for a, b in zip(out_net, net_sequential):
        _same_run(a, b)
    assert isinstance(bad[0], FailedStart) and "ParameterError" in bad[0].error


def test_unknown_option_fails_before_shipping(setup):
    prob, inits, _ = setup
    from symflow.dynamics import TrainingOptionError

    with pytest.raises(TrainingOptionError, match="maxT"):
        train_many(prob, inits, executor=concurrent.futures.ThreadPoolExecutor(1), maxt=3)

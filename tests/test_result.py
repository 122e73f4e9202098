"""Result: exact save/load round trip, critical-point summary, trajectory distance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from symflow.dynamics import train
from symflow.result import (
    Result,
    ResultFileError,
    critical_point_summary,
    load_result,
    trajectory_distance,
)
from toyproblem import teacher_student


@pytest.fixture(scope="module")
def result():
    prob, pt = teacher_student(seed=4, d=2, k_teacher=2, k_student=2, N=80)
    p0 = pt + 0.3 * np.random.default_rng(0).standard_normal(pt.size)
    return train(prob, p0, maxT=1e3, n_samples_trajectory=30, verbosity=0,
                 tauinv=np.linspace(1.0, 2.0, pt.size))


def test_save_load_round_trip_is_exact(result, tmp_path):
    path = result.save(tmp_path / "run")
    assert path.endswith(".npz")
    back = load_result(path)
    assert back == result  # every field, arrays bit for bit
    for name in ("x", "trajectory_points", "loss_curve_loss", "hessian_eigenvalues", "tauinv"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.loss == result.loss and back.phases["flow"].time == result.phases["flow"].time
    assert back.summary == result.summary and back.kind == result.kind == "minimum"
    # the equality really looks at the data: one ulp anywhere breaks it
    back.trajectory_points[3, 2] = np.nextafter(back.trajectory_points[3, 2], np.inf)
    assert back != result


def test_file_is_portable_npz_with_strict_json(result, tmp_path):
    weird = Result(x=np.array([np.nan, np.inf]), loss=math.inf, gnorm=math.nan,
                   init=np.zeros(2), options={"minloss": -math.inf, "note": "ü"})
    path = weird.save(tmp_path / "weird.npz")
    with np.load(path, allow_pickle=False) as z:  # no pickle needed to read anything
        meta = json.loads(str(z["__meta__"][()]), parse_constant=lambda c: pytest.fail(c))
        assert meta["format"] == "symflow-result"
    back = load_result(path)
    assert back == weird and math.isinf(back.loss) and math.isnan(back.gnorm)
    assert back.options["minloss"] == -math.inf


def test_loading_something_else_is_a_named_error(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ResultFileError, match="not written by Result.save"):
        load_result(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ResultFileError):
        load_result(tmp_path / "text.npz")


@pytest.mark.parametrize("lam, kind, counts", [
    ([1.0, 2.0, 3.0], "minimum", (0, 0, 3)),
    ([-1.0, -2.0], "maximum", (2, 0, 0)),
    ([-1e-3, 1e-12, 5.0], "saddle", (1, 1, 1)),
    ([1e-10, 1.0, 2.0], "degenerate", (0, 1, 2)),
    # the zero band is relative: 1e-9 against a largest eigenvalue 1e3 is zero,
    ([1e-9 * 1e3 / 2, 1e3], "degenerate", (0, 1, 1)),
    # but 2e-8 relative is a genuine positive direction
    ([2e-5, 1e3], "minimum", (0, 0, 2)),
])
def test_critical_point_summary(lam, kind, counts):
    s = critical_point_summary(np.array(lam))
    assert s["kind"] == kind
    assert (s["negative"], s["zero"], s["positive"]) == counts
    assert s["tol"] == pytest.approx(1e-8 * max(abs(v) for v in lam))


def test_kind_is_not_critical_when_not_converged(result):
    r = Result(x=result.x, loss=1.0, gnorm=1.0, init=result.init, summary=result.summary,
               converged=False)
    assert r.kind == "not critical" and r.summary["kind"] == "minimum"


def _brute_force_peer(xa, xb):
    """The peer's monotone closest-point search, written independently (index loop)."""
    out, j0 = [], 0
    for x in xa:
        d = [np.linalg.norm(xb[j] - x) for j in range(len(xb))]
        j = j0
        while j + 1 < len(xb) and d[j + 1] <= d[j]:
            j += 1
        j0 = j
        out.append((d[j], j))
        if j == len(xb) - 1:
            break
    return out


def test_trajectory_distance_follows_the_peer_definition():
    rng = np.random.default_rng(0)
    tb = np.linspace(0, 1, 40)
    xb = np.cumsum(rng.standard_normal((40, 3)), axis=0)
    ta = np.linspace(0, 1, 25)
    xa = xb[np.linspace(0, 30, 25).astype(int)] + 0.01 * rng.standard_normal((25, 3))
    d = trajectory_distance((ta, xa), (tb, xb))
    ref = _brute_force_peer(xa, xb)
    np.testing.assert_allclose(d.distances, [r[0] for r in ref], rtol=1e-15)
    np.testing.assert_array_equal(d.indices, [r[1] for r in ref])
    np.testing.assert_array_equal(d.times, tb[d.indices])
    # the matched indices never go back in time
    assert np.all(np.diff(d.indices) >= 0)


def test_trajectory_distance_at_equal_times_and_between_runs():
    prob, pt = teacher_student(seed=4, d=2, k_teacher=2, k_student=2, N=80)
    p0 = pt + 0.3 * np.random.default_rng(0).standard_normal(pt.size)
    kw = dict(maxT=10.0, n_samples_trajectory=15, maxiterations_optim=0, verbosity=0)
    tight = train(prob, p0, method="DOP853", reltol=1e-12, abstol=1e-14, **kw)
    loose = train(prob, p0, method="RK45", reltol=1e-4, abstol=1e-7, **kw)
    same = trajectory_distance(tight, tight, matching="time")
    assert np.all(same.distances == 0) and len(same.distances) == 15
    d = trajectory_distance(loose, tight, matching="time")
    np.testing.assert_array_equal(d.times, tight.trajectory_times)
    # a loose solver stays close (rtol 1e-4 on O(1) parameters), but not exactly
    assert 0 < d.distances.max() < 1e-2
    closest = trajectory_distance(loose, tight)
    assert closest.distances.max() <= d.distances.max() + 1e-12  # closest ≤ same-time
    with pytest.raises(ValueError, match="matching"):
        trajectory_distance(loose, tight, matching="nearest")

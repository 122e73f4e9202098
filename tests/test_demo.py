"""The `symflow demo` main job, `symflow train CONFIG.toml`, and the figures they write."""

from __future__ import annotations

import io

import numpy as np
import pytest

from symflow.result import load_result

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == PNG


def test_demo_fast_runs_end_to_end_and_writes_figures(tmp_path):
    symflow = pytest.importorskip("symflow")
    from symflow.demo import run_demo

    buf = io.StringIO()
    out = run_demo(tmp_path / "demo", fast=True, verbosity=1, stream=buf)
    text = buf.getvalue()
    flow = out["results"]["flow (finite data)"]
    # the embedded experiment is realizable: the flow + refinement find the teacher
    assert flow.converged and flow.kind == "minimum" and flow.gnorm <= 1e-12
    assert flow.loss < 1e-20
    # the table shows every run with its critical-point type and phase times
    assert "flow (finite data)" in text and "minimum" in text and "refine" in text
    assert "gradient descent (finite)" in text and "trajectory distance" in text
    if hasattr(symflow, "GaussianNet") and out["infinite"] == "ran":
        assert "flow (infinite data)" in out["results"]
    else:
        assert "infinite-data run: skipped" in text and "GaussianNet" in text
        assert "flow (infinite data)" not in out["results"]
    names = sorted(p.rsplit("/", 1)[-1] for p in out["figures"])
    assert {"loss_curves.png", "trajectory_distance.png"} <= set(names)
    for path in out["figures"]:
        assert _is_png(path)
    losses = sorted(r.loss for r in out["results"].values())
    assert sorted(load_result(p).loss for p in out["files"]) == losses


def test_cli_demo_and_train_commands(tmp_path, capsys):
    pytest.importorskip("symflow")
    from symflow.cli import main

    assert main(["demo", "--fast", "--outdir", str(tmp_path / "d"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert _is_png(tmp_path / "d" / "loss_curves.png")

    np.savez(tmp_path / "data.npz", X=np.random.default_rng(0).standard_normal((50, 2)),
             Y=np.random.default_rng(1).standard_normal((50, 1)))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        '[architecture]\nspec = "2 | 3 softplus | 1 identity"\n'
        '[data]\nsource = "file"\nfile = "data.npz"\n'
        "[init]\nseed = 4\n"
        "[train]\nmaxT = 100.0\nmaxtime_ode = 5\nmaxtime_optim = 5\n"
        f'[output]\ndir = "{tmp_path / "ignored"}"\n'
    )
    assert main(["train", str(cfg), "--outdir", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "start 4" in printed and "result.npz" in printed
    res = load_result(tmp_path / "run" / "result.npz")
    assert res.options["maxT"] == 100.0 and res.nparams == 13
    assert _is_png(tmp_path / "run" / "loss_curves.png")
    assert not (tmp_path / "ignored").exists()  # --outdir overrides [output] dir


def test_config_errors_are_named(tmp_path):
    from symflow.config import ConfigError, run_config

    bad = tmp_path / "bad.toml"
    bad.write_text('[architecture]\nspec = "1 | 2 tanh | 1 identity"\n[train]\nmaxt = 3\n')
    with pytest.raises(ConfigError, match="did you mean 'maxT'"):
        run_config(bad)
    bad.write_text('[architekture]\nspec = "1 | 2 tanh | 1"\n')
    with pytest.raises(ConfigError, match="did you mean 'architecture'"):
        run_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        run_config(tmp_path / "missing.toml")

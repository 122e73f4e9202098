"""The `symflow` command: generate and formulas."""

import subprocess
import sys

import pytest


def _run(*args, cwd=None, ok=True):
    proc = subprocess.run([sys.executable, "-m", "symflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True)
    if ok and proc.returncode != 0:
        pytest.fail(f"symflow {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def test_generate_writes_module_in_generated_by_default(tmp_path):
    proc = _run("generate", "1 | 2 tanh nobias | 1", "--name", "cli_net", "--no-compile",
                cwd=tmp_path)
    assert (tmp_path / "generated" / "cli_net.c").is_file()
    assert (tmp_path / "generated" / "cli_net.py").is_file()
    assert "import cli_net" in proc.stdout


def test_formulas_text_and_latex():
    text = _run("formulas", "softplus").stdout
    assert "softplus'(x) = Sigmoid(x)" in text
    latex = _run("formulas", "1 | 1 tanh | 1", "--latex").stdout
    assert r"\tanh" in latex and "loss &=" in latex


def test_cli_errors_are_named_and_exit_2():
    proc = _run("formulas", "tanhh", ok=False)
    assert proc.returncode == 2
    assert "ActivationError" in proc.stderr and "'tanh'" in proc.stderr
    proc = _run("generate", "2 | 3 softmax | 1", ok=False)
    assert proc.returncode == 2 and "SpecError" in proc.stderr and "last layer" in proc.stderr

"""The README's commands and Python examples are what a new user runs first."""

import re
import subprocess
import sys

import pytest


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_install_run_and_install_test(repo_root):
    text = (repo_root / "README.md").read_text()
    bash = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert bash[0].strip() == "pip install . && symflow demo"
    assert bash[1].strip() == 'pip install ".[test]" && pytest'
    ci = (repo_root / ".ci" / "run").read_text()
    assert 'pip install ".[test]" && pytest' in ci   # CI runs exactly the README's test command


def test_readme_python_examples_run(repo_root, tmp_path):
    text = (repo_root / "README.md").read_text()
    blocks = _python_blocks(text)
    assert len(blocks) >= 3
    # the generate-then-import example needs the module generated first, as the README says
    gen = re.search(r'symflow generate "([^"]+)" --name (\w+)', text)
    subprocess.run([sys.executable, "-m", "symflow.cli", "generate", gen.group(1),
                    "--name", gen.group(2)], cwd=tmp_path, check=True, capture_output=True)
    for i, block in enumerate(blocks):
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.fail(f"README python block {i} failed:\n{block}\n{proc.stderr}")

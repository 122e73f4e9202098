"""The examples in the public docstrings run and print what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import symflow

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(symflow.__path__, prefix="symflow.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"

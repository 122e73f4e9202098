"""Shared test setup: compiled modules go to a per-session temporary cache, never ~/.cache."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def symflow_cache_dir(tmp_path_factory):
    """Point SYMFLOW_CACHE_DIR at a fresh directory for the whole session (restored after)."""
    old = os.environ.get("SYMFLOW_CACHE_DIR")
    path = tmp_path_factory.mktemp("symflow-cache")
    os.environ["SYMFLOW_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SYMFLOW_CACHE_DIR", None)
    else:
        os.environ["SYMFLOW_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def repo_root():
    """The repository checkout (the folder holding symflow/, templates/, generated/)."""
    return Path(__file__).resolve().parent.parent

"""The wheel must ship every sub-package and every template (CI installs non-editable)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_every_subpackage_and_template_is_packaged(repo_root):
    config = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(repo_root).parts)
             for p in (repo_root / "symflow").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    patterns = config["package-data"]["symflow.templates"]
    templates = [p.name for p in (repo_root / "templates").iterdir() if p.name != "__init__.py"
                 and p.is_file()]
    for name in templates:
        assert any(name.endswith(pat.lstrip("*")) for pat in patterns), name

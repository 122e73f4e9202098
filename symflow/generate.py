"""Generate-then-import: write an architecture's kernels as an importable module.

``symflow generate "2 | 10 softplus | 1 identity"`` writes, under ``generated/``:

* ``<name>.c`` -- the kernels' C source (deterministic; checked in for the
  reference architectures),
* ``<name>.py`` -- a small module holding the spec; importing it compiles the C
  source once (no SymPy needed) into ``_<name>_kernels<EXT_SUFFIX>`` beside it
  and registers the compiled kernels with symflow,

so that a later session does ``import <name>`` and builds ``<name>.Net(X, Y)``
without SymPy and without touching the cache.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import sysconfig
import tempfile
from pathlib import Path

from . import build
from ._version import __version__
from .errors import SpecError
from .spec import MLP

__all__ = ["generate", "load_generated"]

_MODULE_TEMPLATE = "generated_module.py.j2"


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SpecError(
            f"module name {name!r} is not a valid Python identifier; use letters, digits and _"
        )
    return name


def generate(arch: MLP, name: str | None = None, outdir: str | os.PathLike = "generated",
             compile: bool = True) -> Path:
    """Write ``<outdir>/<name>.c`` and ``<outdir>/<name>.py`` for ``arch``; return the .py path.

    With ``compile=True`` the extension is compiled right away (otherwise on first import).

    >>> import tempfile
    >>> arch = MLP(1, [(2, "tanh", True), (1, "identity", True)])
    >>> path = generate(arch, "tiny", tempfile.mkdtemp(), compile=False)
    >>> sorted(p.name for p in path.parent.iterdir())
    ['tiny.c', 'tiny.py']
    """
    from .emit import _environment, emit_source, template_text

    if not isinstance(arch, MLP):
        raise SpecError(f"generate needs an MLP, got {type(arch).__name__}")
    for ly in arch.layers:
        for act in ly.activations():
            if not isinstance(act, str) and act.text is None:
                raise SpecError(
                    "generate writes the spec as Python source, so SymPy-object activations "
                    "cannot be stored; pass the activation as a string such as 'x*tanh(x)'"
                )
    name = _check_name(name or arch.slug)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    source = emit_source(arch)
    module_text = _environment().from_string(template_text(_MODULE_TEMPLATE)).render(
        version=__version__, arch_repr=repr(arch), name=name, extension=f"_{name}_kernels",
        nparams=arch.nparams,
    )
    _write_atomic(out / f"{name}.c", source)
    _write_atomic(out / f"{name}.py", module_text)
    if compile:
        _compile_beside(out / f"{name}.c", f"_{name}_kernels")
    return out / f"{name}.py"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; generated files are ordinary files
    os.replace(tmp, path)


def _fingerprint(source: str) -> str:
    cc, flags = build.compiler()
    key = json.dumps([source, cc, flags, sysconfig.get_config_var("EXT_SUFFIX")])
    return hashlib.sha256(key.encode()).hexdigest()


def _compile_beside(c_file: Path, extension: str) -> Path:
    """Compile ``c_file`` into ``<dir>/<extension><EXT_SUFFIX>`` unless an up-to-date one exists."""
    directory = c_file.parent
    source = c_file.read_text(encoding="utf-8")
    manifest_path = directory / f"{extension}.json"
    target = directory / f"{extension}{sysconfig.get_config_var('EXT_SUFFIX')}"
    fingerprint = _fingerprint(source)
    try:
        manifest = json.loads(manifest_path.read_text())
        if (manifest["fingerprint"] == fingerprint
                and hashlib.sha256(target.read_bytes()).hexdigest() == manifest["sha256"]):
            return target
    except (OSError, ValueError, KeyError):
        pass
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{extension}-", dir=directory))
    try:
        so = build.compile_extension(extension, source, tmp, log_dir=directory)
        os.replace(so, target)
        manifest = {"fingerprint": fingerprint,
                    "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                    "symflow": __version__}
        _write_atomic(manifest_path, json.dumps(manifest, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_generated(py_file: str, arch: MLP, extension: str):
    """Load (compiling if needed, without SymPy) the kernels beside a generated module.

    Called by the generated ``<name>.py``; registers the kernels so that
    ``symflow.Net(arch, ...)`` uses them.
    """
    c_file = Path(py_file).with_suffix(".c")
    so = _compile_beside(c_file, extension)
    loader = importlib.machinery.ExtensionFileLoader(extension, str(so))
    spec = importlib.util.spec_from_file_location(extension, str(so), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    build.register(arch, module)
    return module

"""Build stage: compile emitted C with cffi into a cached, importable module.

Cache entries live in ``$SYMFLOW_CACHE_DIR`` (default ``$XDG_CACHE_HOME/symflow``
or ``~/.cache/symflow``), one directory per module, named
``_sf_<slug>_<hash>`` where the hash covers everything that changes the binary:
the spec, the generator version and sources, the templates, the compiler, its
version and flags, the cffi version and the Python ABI.  The key is computed
without SymPy, so a cache hit never touches it.

An entry is built in a private temporary directory and published with one
atomic ``rename``; a ``manifest.json`` written last records the SHA-256 of the
shared object.  Readers trust only entries whose manifest matches, so several
processes may build the same key at once (the first rename wins, the others
discard their copy) and a truncated or corrupted entry is detected and rebuilt.
A failed build leaves its compiler log under ``failed/`` and raises
:class:`~symflow.errors.CompilationError`.

cffi generates the CPython extension wrapper around the kernels; symflow runs
the compiler itself (``cc -shared``) so that it controls the flags that go into
the key and can report the compiler's own messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import CompilationError, CompilerNotFoundError
from .spec import MLP

__all__ = ["cache_dir", "cache_key", "module_name", "load", "compile_extension", "compiler",
           "INSTALL_HINT"]

INSTALL_HINT = (
    "install a C compiler and the Python headers: Debian/Ubuntu `apt-get install gcc "
    "python3-dev`, Fedora `dnf install gcc python3-devel`, macOS `xcode-select --install`, "
    "conda `conda install c-compiler`; or point the CC environment variable at a compiler"
)

# _CFFI_NO_LIMITED_API: the full CPython C API for the kernels' Python entry point
# (templates/python_entry.h), which needs the buffer protocol; the module is built for
# one interpreter anyway (its ABI is part of the cache key).
_DEFAULT_FLAGS = ("-O3", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-D_CFFI_NO_LIMITED_API")
_lock = threading.Lock()
_loaded: dict[str, object] = {}  # module name -> loaded extension, per process


def cache_dir() -> Path:
    """Root of the compiled-module cache (``SYMFLOW_CACHE_DIR`` overrides)."""
    env = os.environ.get("SYMFLOW_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symflow"


def compiler() -> tuple[list[str], list[str]]:
    """``(compiler command, flags)``: ``$CC`` or Python's compiler, plus ``$SYMFLOW_CFLAGS``."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    flags = list(_DEFAULT_FLAGS) + shlex.split(os.environ.get("SYMFLOW_CFLAGS", ""))
    return shlex.split(cc), flags


@lru_cache(maxsize=8)
def _compiler_version(cc: tuple[str, ...]) -> str:
    exe = shutil.which(cc[0])
    if exe is None:
        raise CompilerNotFoundError(
            f"no C compiler found: {cc[0]!r} is not on PATH. symflow compiles one module per "
            f"architecture; {INSTALL_HINT}."
        )
    try:
        out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise CompilerNotFoundError(f"cannot run the C compiler {cc[0]!r}: {exc}; {INSTALL_HINT}.")
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


@lru_cache(maxsize=1)
def _generator_digest() -> str:
    """Hash of the generator's own sources: a changed formula or printer means a new key."""
    from .emit import templates_digest

    here = Path(__file__).resolve().parent
    h = hashlib.sha256(templates_digest().encode())
    sources = [here / "emit.py", here / "emit_gaussian.py",
               *sorted((here / "symbolic").rglob("*.py"))]
    for path in sources:
        h.update(str(path.relative_to(here)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(spec: MLP) -> str:
    """Hex SHA-256 of everything that changes the compiled module of ``spec``."""
    import cffi

    cc, flags = compiler()
    parts = {
        "spec": spec.key,
        "symflow": __version__,
        "generator": _generator_digest(),
        "cc": cc,
        "cc_version": _compiler_version(tuple(cc)),
        "flags": flags,
        "cffi": cffi.__version__,
        "numpy": np.__version__,  # the kernels' Python entry point uses NumPy's C API
        "abi": [sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"),
                platform.machine()],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def module_name(spec: MLP) -> str:
    """Importable module name ``_sf_<slug>_<hash16>`` of ``spec``'s compiled kernels."""
    return f"_sf_{spec.slug[:48]}_{cache_key(spec)[:16]}"


# ---------------------------------------------------------------------------------------
# compiling
# ---------------------------------------------------------------------------------------
def compile_extension(name: str, source: str, outdir: Path, log_dir: Path | None = None,
                      cdef_text: str | None = None) -> Path:
    """Compile kernels ``source`` into the extension ``outdir/<name><EXT_SUFFIX>``.

    ``cdef_text`` declares the C functions Python may call (default: the MLP kernels').

    Raises CompilerNotFoundError when no compiler (or no Python.h) is available,
    CompilationError with the compiler's output otherwise.
    """
    import cffi

    from .emit import cdef

    cc, flags = compiler()
    _compiler_version(tuple(cc))  # raises a clear error when the compiler is missing
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise CompilerNotFoundError(
            f"Python.h not found in {include}: the Python development headers are missing; "
            f"{INSTALL_HINT}."
        )
    outdir.mkdir(parents=True, exist_ok=True)
    ffi = cffi.FFI()
    ffi.cdef(cdef() if cdef_text is None else cdef_text)
    ffi.set_source(name, source)
    wrapper = outdir / f"{name}.c"
    with contextlib.redirect_stdout(io.StringIO()):  # cffi announces "generating ..."
        ffi.emit_c_code(str(wrapper))
    target = outdir / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    link = ["-bundle", "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else ["-shared"]
    cmd = [*cc, *flags, *link, f"-I{include}", f"-I{np.get_include()}", str(wrapper), "-o",
           str(target), "-lm", "-pthread"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise CompilerNotFoundError(f"cannot run {cc[0]!r}: {exc}; {INSTALL_HINT}.") from None
    if proc.returncode != 0 or not target.is_file():
        log = f"$ {shlex.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
        where = ""
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{name}.log"
            log_path.write_text(log)
            where = f" (full log: {log_path})"
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise CompilationError(
            f"compiling {name} failed with exit code {proc.returncode}{where}:\n{tail}\n"
            f"If the compiler itself is broken or missing, {INSTALL_HINT}."
        )
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _valid_entry(entry: Path, name: str) -> Path | None:
    """Path of the shared object if ``entry`` is complete and intact, else None."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        so = entry / manifest["shared_object"]
        if manifest.get("module") == name and _sha256(so) == manifest["sha256"]:
            return so
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _discard(path: Path) -> None:
    """Move ``path`` aside atomically, then delete it (safe against concurrent readers)."""
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex}")
    try:
        os.rename(path, trash)
    except OSError:
        return  # already moved by another process
    shutil.rmtree(trash, ignore_errors=True)


def _build_entry(spec: MLP, name: str, root: Path) -> None:
    from .emit import emit_source  # SymPy is imported only here, on a cache miss

    own = getattr(spec, "emit_source", None)  # other module kinds (e.g. Gaussian kernels)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        source = own() if own is not None else emit_source(spec)
        (tmp / "kernels.c").write_text(source)
        so = compile_extension(name, source, tmp, log_dir=root / "failed",
                               cdef_text=spec.cdef() if own is not None else None)
        manifest = {"module": name, "shared_object": so.name, "sha256": _sha256(so),
                    "spec": spec.key, "symflow": __version__}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, root / name)
        except OSError:
            if _valid_entry(root / name, name) is None:
                raise
            # another process published the same entry first: keep theirs
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _import_extension(name: str, path: Path):
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load(spec):
    """The compiled extension of ``spec`` (``.ffi``, ``.lib``): from memory, cache or a build."""
    name = module_name(spec)
    with _lock:
        module = _loaded.get(name)
        if module is not None:
            return module
        root = cache_dir()
        entry = root / name
        so = _valid_entry(entry, name)
        if so is None:
            if entry.exists():
                _discard(entry)  # truncated, corrupted or half-written: rebuild
            _build_entry(spec, name, root)
            so = _valid_entry(entry, name)
            if so is None:
                raise CompilationError(
                    f"the cache entry {entry} is still invalid after a rebuild; check that "
                    f"{root} is writable and not shared with an incompatible machine, or set "
                    f"SYMFLOW_CACHE_DIR to a fresh directory"
                )
        module = _import_extension(name, so)
        _check_module(module, spec)
        _loaded[name] = module
        return module


def register(spec: MLP, module) -> None:
    """Make an already imported extension (e.g. from ``symflow generate``) serve ``spec``."""
    _check_module(module, spec)
    with _lock:
        _loaded[module_name(spec)] = module


def _check_module(module, spec: MLP) -> None:
    from .emit import API_VERSION

    API_VERSION = getattr(spec, "api_version", API_VERSION)
    lib, ffi = module.lib, module.ffi
    key = ffi.string(lib.sf_spec_key()).decode()
    if lib.sf_api_version() != API_VERSION or key != spec.key:
        raise CompilationError(
            f"compiled module {module.__name__} does not match {spec!r} (API "
            f"{lib.sf_api_version()} vs {API_VERSION}); regenerate it with `symflow generate` "
            f"or clear the cache directory {cache_dir()}"
        )

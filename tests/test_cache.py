"""The compiled-module cache: concurrent builds, SymPy-free hits, corruption
recovery, the cache key, and pickling a Net without its compiled handle.

The library keeps an in-process registry of loaded modules, so every real cache
miss or hit is observed in a fresh interpreter (``sys.executable -c``) with its
own environment.  Each run picks a random hidden width so that the architecture
has never been built before, not even in this pytest process's registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import symflow
from symflow import MLP, Net, build

# Subprocesses import the same symflow as this process (a checkout or an installed
# wheel) and run in a neutral directory, so the checkout cannot shadow the wheel.
PKG_PARENT = Path(symflow.__file__).resolve().parent.parent
TIMEOUT = 600

# One random architecture per test run, and another for the concurrency test.
_RNG = random.Random()
DIN = _RNG.randint(1, 3)
WIDTH = _RNG.randint(5, 60)
WIDTH_CONCURRENT = _RNG.choice([w for w in range(5, 61) if w != WIDTH])


def arch_of(width: int) -> MLP:
    return MLP(DIN, [(width, "softplus", True), (1, "identity", True)])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(tmp_path / "cache"))


def env_for(cache: Path, **extra) -> dict:
    env = {**os.environ, "SYMFLOW_CACHE_DIR": str(cache), **extra}
    env["PYTHONPATH"] = str(PKG_PARENT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_python(args: list[str], cache: Path, **env_extra) -> subprocess.CompletedProcess:
    """``python -c args...`` in a fresh interpreter whose cache is ``cache``."""
    return subprocess.run([sys.executable, "-c", *args], env=env_for(cache, **env_extra),
                          cwd=str(cache.parent), capture_output=True, text=True,
                          timeout=TIMEOUT)


# Builds (or loads) the Net of arch_of(width) on fixed data and prints, as JSON, the
# loss and gradient bit patterns, the module name and whether SymPy was imported.
# argv: din width [start time to wait for, so that concurrent processes race]
SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import symflow

    din, width = int(sys.argv[1]), int(sys.argv[2])
    arch = symflow.MLP(din, [(width, "softplus", True), (1, "identity", True)])
    rng = np.random.default_rng(42)
    X = rng.normal(size=(64, din))
    y = np.tanh(X.sum(axis=1))
    p = arch.random_params(seed=7)
    if len(sys.argv) > 3:
        while time.time() < float(sys.argv[3]):
            time.sleep(0.005)
    net = symflow.Net(arch, X, y)
    loss, grad = net.loss_and_gradient(p)
    print(json.dumps({
        "loss": net.loss(p).hex(),
        "loss_from_grad": float(loss).hex(),
        "grad": grad.tobytes().hex(),
        "module": symflow.build.module_name(arch),
        "sympy": "sympy" in sys.modules,
    }))
    """
)


def run_script(cache: Path, width: int, *extra_args: str, **env_extra) -> dict:
    proc = run_python([SCRIPT, str(DIN), str(width), *extra_args], cache, **env_extra)
    assert proc.returncode == 0, f"arch {arch_of(width)!r}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def entry_state(cache: Path, name: str) -> dict:
    """Assert ``cache`` holds exactly one complete, intact entry ``name``; describe it."""
    names = sorted(p.name for p in cache.iterdir())
    assert names == [name], f"expected only {name}, found {names}"
    entry = cache / name
    assert not [p.name for p in entry.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    manifest = json.loads((entry / "manifest.json").read_text())
    so = entry / manifest["shared_object"]
    digest = hashlib.sha256(so.read_bytes()).hexdigest()
    assert manifest["module"] == name
    assert digest == manifest["sha256"], "manifest does not match the shared object"
    return {"manifest": manifest, "so": so, "sha256": digest, "mtime": so.stat().st_mtime_ns}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache holding arch_of(WIDTH), built by one fresh process: (cache, output)."""
    cache = tmp_path_factory.mktemp("shared-cache")
    out = run_script(cache, WIDTH)
    assert out["sympy"] is True  # a miss derives the formulas
    # sf_loss and sf_loss_grad are separate kernels: equal up to round-off, not bitwise
    assert float.fromhex(out["loss"]) == pytest.approx(float.fromhex(out["loss_from_grad"]),
                                                       rel=1e-14)
    entry_state(cache, out["module"])
    return cache, out


# ---------------------------------------------------------------------------------------
# (a) many processes build the same new key at once
# ---------------------------------------------------------------------------------------
def test_concurrent_builds_agree_and_leave_one_entry(tmp_path):
    cache = tmp_path / "concurrent-cache"
    start = time.time() + 3.0  # all interpreters are up and importing well before this
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, str(DIN), str(WIDTH_CONCURRENT),
                          repr(start)],
                         env=env_for(cache), cwd=str(cache.parent), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"arch {arch_of(WIDTH_CONCURRENT)!r}\n{stderr}"
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # the start barrier makes them race: several derived and compiled the same key
    assert sum(out.pop("sympy") for out in results) >= 2
    first = results[0]
    for out in results[1:]:
        assert out == first  # loss and gradient bit for bit, same module
    assert float.fromhex(first["loss"]) == pytest.approx(float.fromhex(first["loss_from_grad"]),
                                                         rel=1e-14)
    assert np.all(np.isfinite(np.frombuffer(bytes.fromhex(first["grad"]))))
    state = entry_state(cache, first["module"])
    assert state["manifest"]["spec"] == arch_of(WIDTH_CONCURRENT).key
    # and a later process gets a hit on that entry with the same numbers
    again = run_script(cache, WIDTH_CONCURRENT)
    assert again["sympy"] is False
    assert {k: again[k] for k in ("loss", "grad")} == {k: first[k] for k in ("loss", "grad")}
    assert entry_state(cache, first["module"])["mtime"] == state["mtime"]


# ---------------------------------------------------------------------------------------
# (b) a hit never imports SymPy
# ---------------------------------------------------------------------------------------
def test_cache_hit_does_not_import_sympy(built):
    cache, ref = built
    before = entry_state(cache, ref["module"])
    out = run_script(cache, WIDTH)
    assert out["sympy"] is False
    assert out == {**ref, "sympy": False}  # same module, loss and gradient bit for bit
    after = entry_state(cache, ref["module"])
    assert after["mtime"] == before["mtime"] and after["sha256"] == before["sha256"]


def test_cache_hit_literal_snippet(built):
    # The exact usage from the issue, nothing else in the interpreter.
    cache, ref = built
    code = textwrap.dedent(
        f"""
        import sys; import symflow
        import numpy as np
        arch = symflow.MLP({DIN}, [({WIDTH}, "softplus", True), (1, "identity", True)])
        X = np.ones((4, {DIN})); p = arch.random_params(seed=0)
        net = symflow.Net(arch, X, np.zeros(4)); net.loss(p)
        assert 'sympy' not in sys.modules, sorted(m for m in sys.modules if 'sympy' in m)[:5]
        """
    )
    proc = run_python([code], cache)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------
# (c) a damaged entry is detected and rebuilt
# ---------------------------------------------------------------------------------------
def _truncate(entry: Path, so: Path) -> None:
    data = so.read_bytes()
    so.write_bytes(data[: len(data) // 2])


def _overwrite(entry: Path, so: Path) -> None:
    data = bytearray(so.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    so.write_bytes(bytes(data))


def _delete_manifest(entry: Path, so: Path) -> None:
    (entry / "manifest.json").unlink()


def _garble_manifest(entry: Path, so: Path) -> None:
    (entry / "manifest.json").write_text('{"module": ')


def _empty_entry(entry: Path, so: Path) -> None:
    # what a crashed non-atomic writer would leave: the directory, nothing inside
    shutil.rmtree(entry)
    entry.mkdir()


CORRUPTIONS = {"truncate-so": _truncate, "overwrite-so-bytes": _overwrite,
               "delete-manifest": _delete_manifest, "garble-manifest": _garble_manifest,
               "empty-entry": _empty_entry}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupted_entry_is_rebuilt(built, tmp_path, corrupt):
    shared, ref = built
    cache = tmp_path / "cache"
    shutil.copytree(shared, cache)
    name = ref["module"]
    good = entry_state(cache, name)
    corrupt(cache / name, good["so"])
    out = run_script(cache, WIDTH)
    assert out["sympy"] is True  # it really rebuilt rather than loading the damaged file
    assert out == {**ref, "sympy": True}  # and gives the right numbers, bit for bit
    entry_state(cache, name)  # one intact entry, no trash or temporary directories


# ---------------------------------------------------------------------------------------
# (d) the cache key
# ---------------------------------------------------------------------------------------
def test_cache_key_changes_with_cflags(monkeypatch):
    arch = arch_of(WIDTH)
    keys, names = {}, {}
    for flags in ["", "-O2", "-O2 -g", "-ffast-math"]:
        monkeypatch.setenv("SYMFLOW_CFLAGS", flags)
        keys[flags] = build.cache_key(arch)
        names[flags] = build.module_name(arch)
        assert names[flags].startswith(f"_sf_{arch.slug}_")
        assert names[flags].endswith(keys[flags][:16])
    assert len(set(keys.values())) == 4 and len(set(names.values())) == 4
    monkeypatch.setenv("SYMFLOW_CFLAGS", "")
    assert build.cache_key(arch) == keys[""]
    monkeypatch.delenv("SYMFLOW_CFLAGS")
    assert build.cache_key(arch) == keys[""]  # unset and empty mean the same flags
    monkeypatch.setenv("SYMFLOW_CFLAGS", "  -O2   -g ")
    assert build.cache_key(arch) == keys["-O2 -g"]  # whitespace is not a flag


def test_cache_key_follows_spec_equality(monkeypatch):
    monkeypatch.delenv("SYMFLOW_CFLAGS", raising=False)
    a = MLP(2, [(3, ("tanh",) * 3, True), (1, "identity", True)])
    b = MLP(2, [(3, "tanh"), (1, "identity")])
    c = MLP(2, [(3, "tanh", True), (1, "identity", False)])
    assert build.cache_key(a) == build.cache_key(b)
    assert build.cache_key(a) != build.cache_key(c)
    assert build.module_name(a) != build.module_name(c)


def test_cache_key_changes_with_compiler(monkeypatch):
    gcc, cc = shutil.which("gcc"), shutil.which("cc")
    if not (gcc and cc):
        pytest.skip("needs both gcc and cc on PATH")
    arch = arch_of(WIDTH)
    monkeypatch.setenv("CC", "gcc")
    k1 = build.cache_key(arch)
    monkeypatch.setenv("CC", "cc")
    assert build.cache_key(arch) != k1


KEY_SPECS = (
    f"[symflow.MLP({DIN}, [({WIDTH}, 'softplus', True), (1, 'identity', True)]),"
    " symflow.MLP(3, [(3, ('relu', 'tanh', 'x*sigmoid(x)'), False), (4, 'softmax', True)]),"
    " symflow.MLP(2, [(5, 'erf', True), (2, 'normal_cdf', False), (1, 'g', True)])]"
)


def test_cache_key_independent_of_hash_seed(tmp_path):
    code = (f"import json, symflow, symflow.build as b\nspecs = {KEY_SPECS}\n"
            "print(json.dumps([[b.cache_key(s), b.module_name(s)] for s in specs]))")
    seen = []
    for seed in ["0", "1", "4242", "random"]:
        proc = run_python([code], tmp_path / "cache", PYTHONHASHSEED=seed)
        assert proc.returncode == 0, proc.stderr
        seen.append(json.loads(proc.stdout))
    assert all(s == seen[0] for s in seen[1:]), seen
    here = [[build.cache_key(s), build.module_name(s)] for s in eval(KEY_SPECS)]
    assert seen[0] == here
    assert len({k for k, _ in here}) == 3


def test_cache_key_needs_no_sympy(tmp_path):
    code = (f"import sys, symflow, symflow.build as b\nspecs = {KEY_SPECS}\n"
            "[b.module_name(s) for s in specs]\nassert 'sympy' not in sys.modules")
    proc = run_python([code], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------
# (e) a Net pickles as spec + data, and unpickles to the same numbers elsewhere
# ---------------------------------------------------------------------------------------
UNPICKLE = textwrap.dedent(
    """
    import hashlib, json, pickle, sys
    with open(sys.argv[1], "rb") as f:
        net = pickle.load(f)
    p = net.spec.random_params(seed=3)
    loss, grad, hess = net.loss_gradient_hessian(p)
    print(json.dumps({
        "loss": net.loss(p).hex(),
        "grad": net.gradient(p).tobytes().hex(),
        "hess": net.hessian(p).tobytes().hex(),
        "lgh": [float(loss).hex(), grad.tobytes().hex(), hess.tobytes().hex()],
        "sympy": "sympy" in sys.modules,
    }))
    """
)


def _numbers(net: Net) -> dict:
    p = net.spec.random_params(seed=3)
    loss, grad, hess = net.loss_gradient_hessian(p)
    return {"loss": net.loss(p).hex(), "grad": net.gradient(p).tobytes().hex(),
            "hess": net.hessian(p).tobytes().hex(),
            "lgh": [float(loss).hex(), grad.tobytes().hex(), hess.tobytes().hex()]}


@pytest.fixture
def regularised_net(built, monkeypatch):
    cache, _ = built
    monkeypatch.setenv("SYMFLOW_CACHE_DIR", str(cache))
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, DIN))
    y = np.cos(X[:, 0])
    w = rng.uniform(0.5, 2.0, size=300)
    return Net(arch_of(WIDTH), X, y, weights=w, maxnorm=0.0, merge=(1, 0, 1, 0.3))


def test_pickle_is_small_and_carries_no_handle(regularised_net):
    net = regularised_net
    data = pickle.dumps(net)
    payload = net.X.nbytes + net.Y.nbytes + net.weights.nbytes
    assert len(data) < payload + 2000, (len(data), payload)
    for marker in (b"cffi", b"CompiledFFI", b"_sf_", b".so"):
        assert marker not in data


@pytest.mark.parametrize("where", ["cache-hit", "fresh-cache"])
def test_pickled_net_in_fresh_process(regularised_net, built, tmp_path, where):
    net = regularised_net
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(net))
    expected = _numbers(net)
    cache = built[0] if where == "cache-hit" else tmp_path / "empty-cache"
    proc = run_python([UNPICKLE, str(path)], cache)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("sympy") is (where == "fresh-cache")
    assert out == expected  # loss, gradient, Hessian bit for bit
    # the regularisers travelled too: without them the loss differs
    plain = Net(net.spec, net.X, net.Y, weights=net.weights)
    assert plain.loss(net.spec.random_params(seed=3)).hex() != expected["loss"]


def test_unpickle_in_process_keeps_everything(regularised_net):
    net = regularised_net
    again = pickle.loads(pickle.dumps(net))
    assert again.spec == net.spec and repr(again) == repr(net)
    np.testing.assert_array_equal(again.X, net.X)
    np.testing.assert_array_equal(again.Y, net.Y)
    np.testing.assert_array_equal(again.weights, net.weights)
    assert again.maxnorm == net.maxnorm and again.merge[:4] == net.merge[:4]
    assert _numbers(again) == _numbers(net)


def test_pickle_softmax_net_keeps_integer_labels(tmp_path):
    arch = MLP(2, [(WIDTH % 7 + 2, "tanh", True), (3, "softmax", True)])
    rng = np.random.default_rng(9)
    X = rng.normal(size=(40, 2))
    labels = rng.integers(0, 3, size=40)
    net = Net(arch, X, labels)
    again = pickle.loads(pickle.dumps(net))
    assert repr(again) == repr(net)
    state = again.__getstate__()
    assert state["Y"].dtype.kind == "i"
    np.testing.assert_array_equal(state["Y"], labels)
    assert _numbers(again) == _numbers(net)


def test_symflow_version_recorded_in_manifest(built):
    cache, ref = built
    assert entry_state(cache, ref["module"])["manifest"]["symflow"] == symflow.__version__


def test_building_needs_no_setuptools(tmp_path):
    """symflow runs the compiler itself: a fresh build works where setuptools/distutils
    cannot be imported (Python >= 3.12 venvs ship without setuptools)."""
    code = textwrap.dedent("""
        import sys
        sys.modules["setuptools"] = None
        sys.modules["distutils"] = None
        import numpy as np, symflow
        arch = symflow.MLP(1, [(3, "softplus", True), (1, "identity", True)])
        print(symflow.Net(arch, np.ones((2, 1)), np.ones(2)).loss(arch.random_params(seed=0)))
    """)
    env = dict(os.environ, SYMFLOW_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) > 0

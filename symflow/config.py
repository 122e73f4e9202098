"""``symflow train CONFIG.toml``: a user's experiment described in a TOML file.

A complete file (every section but ``[architecture]`` is optional)::

    [architecture]              # the student
    spec = "2 | 3 softplus | 1 identity"      # or: din = 2, layers = [[3, "softplus", true], ...]

    [data]
    source = "teacher"          # "teacher": Gaussian inputs labelled by [teacher]
                                # "file": arrays X (N, din), Y (N, dout), optional weights
    nsamples = 1000             # teacher source
    seed = 1                    # seed of the Gaussian inputs
    file = "data.npz"           # file source (.npz; a relative path is relative to CONFIG)
    infinite = false            # true: exact expected loss via symflow.GaussianNet

    [teacher]                   # teacher source only
    spec = "2 | 3 softplus | 1 identity"      # default: the student's architecture
    seed = 2                    # teacher parameters ~ N(0, 1) with this seed ...
    # params = [...]            # ... or given explicitly

    [init]
    seed = 0                    # student start arch.random_params(seed)
    # seeds = [0, 1, 2]         # several starts, trained in parallel (train_many)
    # file = "p0.npy"           # or a saved parameter vector

    [train]                     # any option of symflow.train, e.g.
    maxT = 1e4
    maxtime_ode = 60

    [output]
    dir = "symflow-run"         # results (.npz) and figures (.png) go here

The run writes ``result.npz`` (or ``result-<seed>.npz`` per start),
``loss_curves.png`` and, when the spectrum was computed, ``spectrum.png``.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

import numpy as np

from .errors import SymflowError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["run_config", "load_config", "ConfigError"]


class ConfigError(SymflowError, ValueError):
    """A training configuration file is missing, malformed or inconsistent."""


_KEYS: dict[str, tuple[str, ...]] = {
    "architecture": ("spec", "din", "layers"),
    "data": ("source", "nsamples", "seed", "file", "infinite"),
    "teacher": ("spec", "din", "layers", "seed", "params"),
    "init": ("seed", "seeds", "file"),
    "train": (),  # checked against symflow.dynamics.OPTIONS
    "output": ("dir",),
}


def _unknown(kind: str, names: Any, valid: Any) -> None:
    bad = [n for n in names if n not in valid]
    if bad:
        hints = []
        for n in bad:
            close = difflib.get_close_matches(n, list(valid), n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown {kind} {', '.join(hints)}; valid: {', '.join(valid)}")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a configuration file; return its tables as a dict.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.toml"
        >>> _ = p.write_text('[architecture]\\nspec = "1 | 2 tanh | 1 identity"\\n')
        >>> load_config(p)["architecture"]["spec"]
        '1 | 2 tanh | 1 identity'
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path!r} is not valid TOML: {exc}") from None
    _unknown("section", cfg, _KEYS)
    for section, keys in _KEYS.items():
        if section in cfg and not isinstance(cfg[section], dict):
            raise ConfigError(f"[{section}] must be a table")
        if keys and section in cfg:
            _unknown(f"key in [{section}]", cfg[section], keys)
    if "architecture" not in cfg:
        raise ConfigError(f"{path!r} has no [architecture] section; add e.g. "
                          "[architecture] spec = \"2 | 3 softplus | 1 identity\"")
    from .dynamics import OPTIONS

    _unknown("training option in [train]", cfg.get("train", {}), OPTIONS)
    return cfg


def _arch(table: dict[str, Any], where: str) -> Any:
    from .spec import MLP

    if "spec" in table:
        return MLP.from_string(str(table["spec"]))
    if "din" in table and "layers" in table:
        return MLP(int(table["din"]), [tuple(layer) for layer in table["layers"]])
    raise ConfigError(f"[{where}] needs spec = \"DIN | WIDTH ACT | ...\" or both din and layers")


def _relative(base: str, path: str) -> str:
    if os.path.isabs(path):
        return path
    return os.path.join(os.path.dirname(os.path.abspath(base)), path)


def run_config(path: str | os.PathLike[str], outdir: str | os.PathLike[str] | None = None,
               verbosity: int = 1) -> dict[str, Any]:
    """Run the experiment described by a TOML file; save results and figures.

    Returns ``{"results": [...], "files": [...], "figures": [...], "outdir": ...}``.
    ``outdir`` overrides ``[output] dir``.

    Example:
        >>> out = run_config("experiment.toml", outdir="run1")  # doctest: +SKIP
        >>> out["results"][0].kind                                # doctest: +SKIP
        'minimum'
    """
    import symflow

    from .dynamics import train
    from .parallel import train_many
    from .plots import plot_loss_curves, plot_spectrum

    path = os.fspath(path)
    cfg = load_config(path)
    arch = _arch(cfg["architecture"], "architecture")
    data = cfg.get("data", {})
    source = data.get("source", "teacher")
    if source not in ("teacher", "file"):
        raise ConfigError(f"[data] source must be 'teacher' or 'file', not {source!r}")
    infinite = bool(data.get("infinite", False))
    if source == "file":
        if "file" not in data:
            raise ConfigError(
                "[data] source = 'file' needs file = \"data.npz\" with arrays X and Y")
        fname = _relative(path, str(data["file"]))
        try:
            with np.load(fname, allow_pickle=False) as arrays:
                X, Y = arrays["X"], arrays["Y"]
                weights = arrays["weights"] if "weights" in arrays.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot read X and Y from {fname!r}: {exc}") from None
        if infinite:
            raise ConfigError("[data] infinite = true needs source = 'teacher'")
        problem = symflow.Net(arch, X, Y, weights=weights)
    else:
        tcfg = cfg.get("teacher", {})
        tarch = _arch(tcfg, "teacher") if ("spec" in tcfg or "layers" in tcfg) else arch
        if "params" in tcfg:
            tp = np.asarray(tcfg["params"], dtype=np.float64)
        else:
            tp = np.random.default_rng(int(tcfg.get("seed", 0))).standard_normal(tarch.nparams)
        if infinite:
            cls = getattr(symflow, "GaussianNet", None)
            if cls is None or not hasattr(symflow, "TeacherNet"):
                raise ConfigError("[data] infinite = true needs symflow.GaussianNet, which this "
                                  "version does not have; set infinite = false")
            problem = cls(symflow.TeacherNet(tarch, tp), arch)
        else:
            n = int(data.get("nsamples", 1000))
            X = np.random.default_rng(int(data.get("seed", 0))).standard_normal((n, arch.din))
            Y = symflow.Net(tarch, X, np.zeros((n, tarch.dout))).predict(tp)
            problem = symflow.Net(arch, X, Y)

    init = cfg.get("init", {})
    if "file" in init:
        starts = [("file", np.load(_relative(path, str(init["file"])), allow_pickle=False))]
    elif "seeds" in init:
        starts = [(str(s), arch.random_params(seed=int(s))) for s in init["seeds"]]
    else:
        s = int(init.get("seed", 0))
        starts = [(str(s), arch.random_params(seed=s))]

    options = dict(cfg.get("train", {}))
    options.setdefault("verbosity", verbosity)
    outdir = os.fspath(outdir) if outdir is not None else str(cfg.get("output", {}).get(
        "dir", "symflow-run"))
    os.makedirs(outdir, exist_ok=True)
    if len(starts) == 1:
        results = [train(problem, starts[0][1], **options)]
    else:
        results = train_many(problem, [p for _, p in starts], **options)
    files, figures, good = [], [], {}
    for (label, _), res in zip(starts, results):
        name = "result.npz" if len(starts) == 1 else f"result-{label}.npz"
        if not res.ok:
            if verbosity:
                print(f"start {label}: failed: {res.error}")
            continue
        files.append(res.save(os.path.join(outdir, name)))
        good[f"start {label}"] = res
        if verbosity:
            print(f"start {label}: {res!r}")
    if good:
        figures.append(plot_loss_curves(good, os.path.join(outdir, "loss_curves.png")))
        first = next(iter(good.values()))
        if first.summary is not None:
            figures.append(plot_spectrum(first, os.path.join(outdir, "spectrum.png")))
    if verbosity:
        print(f"wrote {', '.join(files + figures)}")
    return {"results": results, "files": files, "figures": figures, "outdir": outdir}

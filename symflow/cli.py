"""Command-line interface: ``symflow generate``, ``symflow formulas`` and the training commands.

Architectures are written as ``"DIN | WIDTH ACTIVATION [nobias] | ..."``, e.g.
``"2 | 10 softplus | 1 identity"``; per-neuron activations are separated by
``;`` (``"3 | 3 relu;tanh;relu | 1"``).
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__
from .errors import SpecError, SymflowError

__all__ = ["main", "parser"]


def _generate(args) -> int:
    from .generate import generate
    from .spec import MLP

    arch = MLP.from_string(args.arch)
    path = generate(arch, args.name, args.outdir, compile=not args.no_compile)
    print(f"wrote {path.with_suffix('.c')} and {path}")
    print(f"use it from Python:  import sys; sys.path.insert(0, {str(path.parent)!r}); "
          f"import {path.stem}; net = {path.stem}.Net(X, Y)")
    return 0


def _formulas(args) -> int:
    from .spec import MLP
    from .symbolic.formulas import format_formulas, formulas, gaussian_formulas

    target = MLP.from_string(args.target) if "|" in args.target else args.target
    if args.gaussian is not None:
        if isinstance(target, MLP):
            raise SpecError("--gaussian takes activations, not an architecture: "
                            "`symflow formulas relu --gaussian erf`")
        result = gaussian_formulas(target, args.gaussian or None)
        sys.stdout.write(format_formulas(result, latex=args.latex))
        return 0
    network = {"auto": None, "yes": True, "no": False}[args.network]
    result = formulas(target, network=network, max_params=args.max_params)
    sys.stdout.write(format_formulas(result, latex=args.latex))
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symflow`` command."""
    top = argparse.ArgumentParser(
        prog="symflow",
        description="Exact losses, gradients and Hessians of MLPs (SymPy -> C -> cffi).",
    )
    top.add_argument("--version", action="version", version=f"symflow {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write an importable kernels module for an architecture")
    gen.add_argument("arch", help="architecture, e.g. '2 | 10 softplus | 1 identity'")
    gen.add_argument("--name", help="module name (default: a slug of the architecture)")
    gen.add_argument("--outdir", default="generated", help="output folder (default: generated)")
    gen.add_argument("--no-compile", action="store_true",
                     help="only write the sources; compile on first import")
    gen.set_defaults(func=_generate)

    form = sub.add_parser("formulas", help="print the SymPy formulas symflow uses")
    form.add_argument("target", help="an activation ('softplus', 'x*tanh(x)') or an architecture")
    form.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    form.add_argument("--network", choices=("auto", "yes", "no"), default="auto",
                      help="include whole-network output and loss expressions (auto: if small)")
    form.add_argument("--max-params", type=int, default=50,
                      help="largest network written out as one expression (default 50)")
    form.add_argument("--gaussian", nargs="?", const="", metavar="PARTNER",
                      help="Gaussian expectations instead: E[f(h)] and E[f(h)^2], or with a "
                           "partner activation E[f(h1) partner(h2)] and its derivatives")
    form.set_defaults(func=_formulas)

    from . import cli_training

    cli_training.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``symflow`` command."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SymflowError as exc:
        print(f"symflow: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

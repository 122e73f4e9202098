"""The training subcommands of ``symflow``: ``demo`` and ``train CONFIG.toml``.

``symflow.cli`` calls :func:`register` on its subparsers object; each command
sets ``func``, which takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.outdir, fast=args.fast, verbosity=0 if args.quiet else 1)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .config import run_config

    out = run_config(args.config, outdir=args.outdir, verbosity=0 if args.quiet else 1)
    return 0 if all(r.ok for r in out["results"]) else 1


def register(subparsers: Any) -> None:
    """Add the ``demo`` and ``train`` commands to an argparse subparsers object.

    Example:
        >>> import argparse
        >>> top = argparse.ArgumentParser(prog="symflow")
        >>> register(top.add_subparsers(dest="command"))
        >>> args = top.parse_args(["demo", "--fast", "--outdir", "out"])
        >>> args.fast, args.outdir, args.func.__name__
        (True, 'out', '_demo')
    """
    demo = subparsers.add_parser(
        "demo", help="run the embedded teacher-student experiment (figures to --outdir)",
        description="Train a student on data from a teacher network: gradient flow, "
                    "refinement to a critical point, gradient descent for comparison, and "
                    "(if available) infinite Gaussian data. Prints a table, writes PNGs.")
    demo.add_argument("--fast", action="store_true", help="smaller data and budgets (for CI)")
    demo.add_argument("--outdir", default="symflow-demo",
                      help="folder for figures and results (default: symflow-demo)")
    demo.add_argument("--quiet", action="store_true", help="print nothing")
    demo.set_defaults(func=_demo)

    train = subparsers.add_parser(
        "train", help="run an experiment described in a TOML file",
        description="Train as described in CONFIG.toml ([architecture], [data], [teacher], "
                    "[init], [train], [output]); see symflow.config for the format.")
    train.add_argument("config", help="path of the TOML configuration")
    train.add_argument("--outdir", default=None, help="output folder (overrides [output] dir)")
    train.add_argument("--quiet", action="store_true", help="print nothing")
    train.set_defaults(func=_train)

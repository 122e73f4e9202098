"""Named errors. Every message says what is wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "SymflowError",
    "SpecError",
    "ActivationError",
    "DataError",
    "ParameterError",
    "EmitError",
    "CompilationError",
    "CompilerNotFoundError",
    "GaussianPairError",
]


class SymflowError(Exception):
    """Base class of every error symflow raises on purpose."""


class SpecError(SymflowError, ValueError):
    """An architecture description is malformed (widths, layers, bias flags, softmax placement)."""


class ActivationError(SpecError):
    """An activation is unknown, unsafe to parse, or cannot be differentiated/printed."""


class DataError(SymflowError, ValueError):
    """Input data (X, Y, labels, sample weights) has the wrong shape, type or values."""


class ParameterError(SymflowError, ValueError):
    """A flat parameter vector has the wrong length, dtype or non-finite entries."""


class EmitError(SymflowError):
    """SymPy produced an expression that symflow cannot print as C."""


class CompilationError(SymflowError, RuntimeError):
    """The C compiler failed; the message carries its output and the log path."""


class CompilerNotFoundError(CompilationError):
    """No working C compiler was found."""


class GaussianPairError(SpecError):
    """A teacher/student pair is not supported for infinite Gaussian input."""

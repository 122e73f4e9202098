"""symflow: exact losses, gradients and Hessians of multilayer perceptrons.

SymPy derives the formulas, symflow emits C from templates, cffi compiles one
module per architecture (cached), and NumPy/SciPy drive the numerics.

>>> import numpy as np, symflow
>>> arch = symflow.MLP(2, [(3, "softplus", True), (1, "identity", True)])
>>> X = np.random.default_rng(0).normal(size=(20, 2))
>>> net = symflow.Net(arch, X, X[:, :1] ** 2)
>>> round(net.loss(np.zeros(arch.nparams)), 12) == round(float(np.mean(X[:, 0] ** 4)), 12)
True
"""

from ._version import __version__
from .errors import (
    ActivationError,
    CompilationError,
    CompilerNotFoundError,
    DataError,
    EmitError,
    ParameterError,
    SpecError,
    SymflowError,
)
from .problems import Net
from .spec import MLP

__all__ = [
    "__version__", "MLP", "Net", "formulas", "format_formulas",
    "SymflowError", "SpecError", "ActivationError", "DataError", "ParameterError",
    "EmitError", "CompilationError", "CompilerNotFoundError",
]


def __getattr__(name):
    # Formulas need SymPy; import them on first use so `import symflow` stays light.
    if name in ("formulas", "format_formulas"):
        from .symbolic import formulas as module

        return getattr(module, name)
    raise AttributeError(f"module 'symflow' has no attribute {name!r}")

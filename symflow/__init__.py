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
    GaussianPairError,
    ParameterError,
    SpecError,
    SymflowError,
)
from .problems import Net
from .spec import MLP

__all__ = [
    "__version__", "MLP", "Net", "formulas", "format_formulas", "gaussian_formulas",
    "train", "train_many", "Result", "load_result", "trajectory_distance",
    "GaussianNet", "TeacherNet", "gauss_hermite_net", "GaussianPairError",
    "SymflowError", "SpecError", "ActivationError", "DataError", "ParameterError",
    "EmitError", "CompilationError", "CompilerNotFoundError",
]


# Imported on first use so that `import symflow` stays light: formulas need SymPy, the
# training loop needs scipy.integrate/optimize (together ~1 s of imports).
_LAZY = {
    "formulas": "symbolic.formulas", "format_formulas": "symbolic.formulas",
    "gaussian_formulas": "symbolic.formulas",
    "train": "dynamics", "train_many": "parallel", "Result": "result",
    "load_result": "result", "trajectory_distance": "result",
    "GaussianNet": "gaussian", "TeacherNet": "gaussian", "gauss_hermite_net": "gaussian",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'symflow' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

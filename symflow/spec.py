"""Architecture specs: immutable, hashable, validated descriptions of an MLP.

A spec owns the flat parameter layout (design.md): layer by layer, ``W`` of
shape ``(out, in)`` flattened row-major, then ``b`` if the layer has a bias --
the order of ``torch.nn.Linear(weight, bias)``.  Building a spec never imports
SymPy unless the user hands in a SymPy expression; its :attr:`MLP.key` is the
canonical text the compiled-module cache is keyed on.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import ActivationError, ParameterError, SpecError
from .symbolic.activations import NAMED
from .symbolic.parse import canonical_text

__all__ = ["MLP", "Layer", "ExpressionActivation", "Activation"]


@dataclass(frozen=True)
class ExpressionActivation:
    """A user activation: whitelisted text (``"x*tanh(x)"``) or a SymPy expression."""

    text: str | None = None
    expr: Any = None

    @property
    def key(self) -> str:
        if self.text is not None:
            return f"expr:{self.text}"
        import sympy as sp

        return f"sympy:{sp.srepr(self.expr)}"

    def __repr__(self) -> str:
        return repr(self.text) if self.text is not None else f"sympy({self.expr})"


Activation = Union[str, ExpressionActivation]


def _activation(value: Any, where: str) -> Activation:
    """Normalise one activation given by the user."""
    if isinstance(value, ExpressionActivation):
        return value
    if isinstance(value, str):
        name = value.strip()
        if name in NAMED:
            return name
        if name == "softmax":
            return name
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            known = [*NAMED, "softmax"]
            near = [n for n in known if n == name.lower()] or difflib.get_close_matches(
                name.lower(), known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise ActivationError(
                f"unknown activation {name!r} in {where}.{hint} Known names: "
                f"{', '.join(NAMED)}, softmax (output layer only); or give an expression "
                f"in x such as 'x*tanh(x)'."
            )
        return ExpressionActivation(text=canonical_text(name))
    if type(value).__module__.startswith("sympy"):
        free = getattr(value, "free_symbols", None)
        if free is None or len(free) != 1:
            raise ActivationError(
                f"a SymPy activation in {where} must depend on exactly one symbol, "
                f"got free symbols {sorted(map(str, free or ()))}; write it in one symbol x."
            )
        return ExpressionActivation(expr=value)
    raise ActivationError(
        f"activation in {where} must be a name, an expression string or a SymPy "
        f"expression, got {type(value).__name__} {value!r}"
    )


def _activation_key(act: Activation) -> str:
    return act if isinstance(act, str) else act.key


@dataclass(frozen=True)
class Layer:
    """One dense layer: ``width`` neurons, an activation (or one per neuron), bias flag."""

    width: int
    activation: Activation | tuple[Activation, ...]
    bias: bool = True

    def activations(self) -> tuple[Activation, ...]:
        """One activation per neuron."""
        if isinstance(self.activation, tuple):
            return self.activation
        return (self.activation,) * self.width

    @property
    def key(self) -> str:
        if isinstance(self.activation, tuple):
            act = "(" + ",".join(_activation_key(a) for a in self.activation) + ")"
        else:
            act = _activation_key(self.activation)
        return f"{self.width}|{act}|{'b' if self.bias else 'nob'}"


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"{what} must be a positive integer, got {value!r}")
    if value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value}")
    return int(value)


class MLP:
    """A multilayer perceptron architecture.

    ``MLP(din, layers)`` with each layer ``(width, activation, bias)``; the
    activation is a name, an expression string in ``x``, a SymPy expression,
    or a tuple with one activation per neuron.  The last layer may be
    ``"softmax"`` (cross-entropy loss with integer labels).

    >>> arch = MLP(2, [(10, "softplus", True), (1, "identity", True)])
    >>> arch.nparams
    41
    >>> W1, b1 = arch.unflatten(arch.random_params(seed=0))[0]
    >>> W1.shape, b1.shape
    ((10, 2), (10,))
    """

    __slots__ = ("_din", "_layers", "_key", "_offsets")

    def __init__(self, din: int, layers):
        din = _positive_int(din, "din (the input dimension)")
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise SpecError(
                f"layers must be a list of (width, activation, bias) tuples, got {layers!r}"
            )
        layers = list(layers)
        if not layers:
            raise SpecError("an MLP needs at least one layer, e.g. [(1, 'identity', True)]")
        built = []
        for index, entry in enumerate(layers, start=1):
            built.append(self._layer(entry, index, len(layers)))
        object.__setattr__(self, "_din", din)
        object.__setattr__(self, "_layers", tuple(built))
        key = f"mlp|{din}|" + "|".join(layer.key for layer in built)
        object.__setattr__(self, "_key", key)
        offsets = [0]
        for li, ly in enumerate(built, start=1):
            nin = din if li == 1 else built[li - 2].width
            offsets.append(offsets[-1] + ly.width * (nin + int(ly.bias)))
        object.__setattr__(self, "_offsets", tuple(offsets))

    @staticmethod
    def _layer(entry, index: int, depth: int) -> Layer:
        where = f"layer {index}"
        if isinstance(entry, Layer):
            entry = (entry.width, entry.activation, entry.bias)
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise SpecError(
                f"{where} must be (width, activation, bias) or (width, activation), got {entry!r}"
            )
        width = _positive_int(entry[0], f"the width of {where}")
        bias = entry[2] if len(entry) == 3 else True
        if not isinstance(bias, (bool, np.bool_)):
            raise SpecError(f"the bias flag of {where} must be True or False, got {bias!r}")
        act = entry[1]
        if isinstance(act, (tuple, list)):
            if len(act) != width:
                raise SpecError(
                    f"{where} has width {width} but {len(act)} per-neuron activations; "
                    f"give exactly one activation per neuron"
                )
            acts = tuple(_activation(a, f"{where}, neuron {i}") for i, a in enumerate(act))
            if "softmax" in acts:
                raise SpecError(
                    f"softmax cannot be a per-neuron activation ({where}); use it for the whole "
                    f"output layer: (n_classes, 'softmax', True)"
                )
            activation = acts[0] if all(a == acts[0] for a in acts) else acts
        else:
            activation = _activation(act, where)
        if activation == "softmax":
            if index != depth:
                raise SpecError(
                    f"softmax is only allowed as the last layer, but {where} of {depth} uses it; "
                    f"use another activation for hidden layers"
                )
            if width < 2:
                raise SpecError(
                    "a softmax output layer needs at least 2 classes; for a binary problem use "
                    "(2, 'softmax', True) or a single 'sigmoid' output with MSE"
                )
        return Layer(width, activation, bool(bias))

    # -- identity ------------------------------------------------------------------
    @property
    def din(self) -> int:
        return self._din

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def key(self) -> str:
        """Canonical text of the architecture (the cache is keyed on it)."""
        return self._key

    def __eq__(self, other) -> bool:
        return isinstance(other, MLP) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __setattr__(self, name, value):
        raise AttributeError("MLP specs are immutable; build a new MLP instead")

    def __delattr__(self, name):
        raise AttributeError("MLP specs are immutable; build a new MLP instead")

    def __reduce__(self):
        return (MLP, (self._din, [(ly.width, ly.activation, ly.bias) for ly in self._layers]))

    def __repr__(self) -> str:
        layers = ", ".join(
            f"({ly.width}, {ly.activation!r}, {ly.bias})" for ly in self._layers
        )
        return f"MLP({self._din}, [{layers}])"

    @property
    def slug(self) -> str:
        """Short readable name, e.g. ``d2_softplus10_identity1``."""
        parts = [f"d{self._din}"]
        for ly in self._layers:
            if isinstance(ly.activation, str):
                name = ly.activation
            elif isinstance(ly.activation, tuple):
                name = "mixed"
            else:
                name = "expr"
            parts.append(f"{name}{ly.width}" + ("" if ly.bias else "nb"))
        return "_".join(parts)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of :attr:`key`."""
        return hashlib.sha256(self._key.encode()).hexdigest()[:16]

    # -- sizes ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(din, n_1, ..., n_L)``."""
        return (self._din, *(ly.width for ly in self._layers))

    @property
    def dout(self) -> int:
        return self._layers[-1].width

    @property
    def softmax(self) -> bool:
        """True when the output layer is softmax (cross-entropy loss)."""
        return self._layers[-1].activation == "softmax"

    def layer_nparams(self, index: int) -> int:
        """Number of parameters of layer ``index`` (1-based)."""
        ly = self._layers[index - 1]
        return ly.width * (self.widths[index - 1] + int(ly.bias))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Offset of each layer's ``W`` in the flat vector, plus the total at the end."""
        return self._offsets

    @property
    def nparams(self) -> int:
        return self._offsets[-1]

    def parameter_names(self) -> list[str]:
        """Names in flat order: ``W1_0_1`` (layer 1, row 0, column 1), ``b1_0``, ..."""
        names = []
        for li, ly in enumerate(self._layers, start=1):
            nin = self.widths[li - 1]
            names += [f"W{li}_{i}_{j}" for i in range(ly.width) for j in range(nin)]
            if ly.bias:
                names += [f"b{li}_{i}" for i in range(ly.width)]
        return names

    # -- parameters ----------------------------------------------------------------
    def check_params(self, p) -> np.ndarray:
        """Return ``p`` as a float64 vector of length :attr:`nparams` or raise ParameterError."""
        if (type(p) is np.ndarray and p.dtype == np.float64 and p.shape == (self.nparams,)
                and p.flags.c_contiguous and math.isfinite(p.dot(p))):
            return p  # the common case, checked in about a microsecond
        arr = np.asarray(p)
        if arr.dtype.kind not in "fiu" or arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
            raise ParameterError(
                f"parameters must be a real float64 vector, got dtype {arr.dtype}"
            )
        if arr.ndim != 1:
            raise ParameterError(
                f"parameters must be one flat 1-D vector of length {self.nparams}, got an array "
                f"of shape {arr.shape}; flatten it with p.ravel() or arch.flatten([(W, b), ...])"
            )
        if arr.shape[0] != self.nparams:
            raise ParameterError(
                f"parameter vector has shape {arr.shape}, but {self!r} has {self.nparams} "
                f"parameters; build one with arch.random_params() or arch.flatten(...)"
            )
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ParameterError(
                f"parameter {bad} ({self.parameter_names()[bad]}) is {arr[bad]}; "
                f"parameters must be finite"
            )
        return arr

    def random_params(self, seed=None, scheme: str = "glorot_normal") -> np.ndarray:
        """Random parameters: Glorot weights, zero biases (Glorot & Bengio 2010).

        ``glorot_normal``: W ~ N(0, 2/(fan_in + fan_out));
        ``glorot_uniform``: W ~ U(-a, a), a = sqrt(6/(fan_in + fan_out)).
        ``seed`` is an int, a ``numpy.random.Generator`` or None.
        """
        if scheme not in ("glorot_normal", "glorot_uniform"):
            raise SpecError(
                f"unknown initialisation scheme {scheme!r}; use 'glorot_normal' or "
                f"'glorot_uniform'"
            )
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        blocks = []
        for li, ly in enumerate(self._layers, start=1):
            fan_in, fan_out = self.widths[li - 1], ly.width
            if scheme == "glorot_normal":
                W = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_out, fan_in))
            else:
                a = np.sqrt(6.0 / (fan_in + fan_out))
                W = rng.uniform(-a, a, size=(fan_out, fan_in))
            blocks.append((W, np.zeros(fan_out) if ly.bias else None))
        return self.flatten(blocks)

    def flatten(self, blocks) -> np.ndarray:
        """Flat vector from a list of ``(W, b)`` per layer (``b`` None without bias)."""
        blocks = list(blocks)
        if len(blocks) != self.depth:
            raise ParameterError(
                f"flatten needs one (W, b) pair per layer: {self.depth} expected, got "
                f"{len(blocks)}"
            )
        parts = []
        for li, (block, ly) in enumerate(zip(blocks, self._layers), start=1):
            if not isinstance(block, (tuple, list)) or len(block) != 2:
                raise ParameterError(f"layer {li}: expected a (W, b) pair, got {block!r}")
            W, b = block
            W = np.asarray(W, dtype=np.float64)
            shape = (ly.width, self.widths[li - 1])
            if W.shape != shape:
                raise ParameterError(f"layer {li}: W has shape {W.shape}, expected {shape}")
            parts.append(W.ravel())
            if ly.bias:
                if b is None:
                    raise ParameterError(f"layer {li} has a bias but b is None")
                b = np.asarray(b, dtype=np.float64)
                if b.shape != (ly.width,):
                    raise ParameterError(
                        f"layer {li}: b has shape {b.shape}, expected ({ly.width},)"
                    )
                parts.append(b)
            elif b is not None:
                raise ParameterError(
                    f"layer {li} has no bias; pass None for its b (got an array)"
                )
        return self.check_params(np.concatenate(parts))

    def unflatten(self, p) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """List of ``(W, b)`` per layer (views into a float64 copy of ``p``)."""
        p = self.check_params(p)
        out = []
        offsets = self.offsets
        for li, ly in enumerate(self._layers, start=1):
            nin, off = self.widths[li - 1], offsets[li - 1]
            W = p[off:off + ly.width * nin].reshape(ly.width, nin)
            b = p[off + ly.width * nin:offsets[li]] if ly.bias else None
            out.append((W, b))
        return out

    # -- compact text form (CLI) ---------------------------------------------------
    @classmethod
    def from_string(cls, text: str) -> MLP:
        """Parse ``"2 | 10 softplus | 1 identity"`` (add ``nobias`` to drop a bias).

        Per-neuron activations are separated by ``;``: ``"3 | 3 relu;tanh;relu | 1"``.
        """
        if not isinstance(text, str):
            raise SpecError(
                f"from_string needs an architecture string such as '2 | 10 softplus | 1 "
                f"identity', got {type(text).__name__}"
            )
        parts = [t.strip() for t in text.split("|")]
        if len(parts) < 2:
            raise SpecError(
                f"architecture string {text!r} needs the input dimension and at least one "
                f"layer, e.g. '2 | 10 softplus | 1 identity'"
            )
        try:
            din = int(parts[0])
        except ValueError:
            raise SpecError(
                f"architecture string {text!r} must start with the input dimension"
            ) from None
        layers = []
        for part in parts[1:]:
            tokens = part.split()
            if not tokens:
                raise SpecError(f"empty layer in architecture string {text!r}")
            try:
                width = int(tokens[0])
            except ValueError:
                raise SpecError(
                    f"layer {part!r} must start with its width, e.g. '10 softplus'"
                ) from None
            bias = True
            if tokens[-1] in ("nobias", "bias"):
                bias = tokens.pop() == "bias"
            act_text = " ".join(tokens[1:]) or "identity"
            act = tuple(a.strip() for a in act_text.split(";")) if ";" in act_text else act_text
            layers.append((width, act, bias))
        return cls(din, layers)

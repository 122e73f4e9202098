"""Problem stage: the numeric objects users call on a flat float64 parameter vector.

:class:`Net` is an MLP on a finite data set.  Its loss (design.md) is

    L(p) = (1/N) sum_n w_n sum_o (f_o(x_n; p) - y_no)^2          (MSE)
    L(p) = -(1/N) sum_n w_n log softmax(f(x_n; p))[y_n]           (softmax output)

plus the optional weight-norm barrier and neuron-merge penalty.  All sums over
samples run in the compiled kernels; Python only checks inputs and hands over
pointers.  A Net pickles as its spec and data, never as the compiled handle.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import lru_cache

import numpy as np

from . import build
from .errors import DataError, ParameterError, SpecError
from .spec import MLP

__all__ = ["Net"]

# Memory per kernel call for the weighted Jacobian columns of the Hessian that go to one
# BLAS rank-k update (small enough to stay in cache between the kernel and dsyrk).
_CHUNK_BYTES = 2**20


# Splitting the samples over threads pays when every thread gets at least this many
# samples and this much work: samples times P for the loss and gradient, samples times
# P^2 for the Hessian.  Measured on a 2-vCPU VM (softplus, k = 10 and 50; workers
# already awake): two threads were faster from about 15 microseconds of one thread's
# work, i.e. from about 200 samples per thread for the gradient at P = 41, 40 at P = 201,
# and for the Hessian from about 150 samples at P = 41 and fewer than 32 at P = 201.
_MIN_SAMPLES_PER_THREAD = 32
_MIN_WORK_PER_THREAD = {"gradient": 8192, "hessian": 2**18}
# The Gauss-Newton part by BLAS dsyrk (when SciPy exposes it) from this many parameters
# on; below, by symflow's own C loops (sf_gn_dot), which work on each slice of 64
# Jacobian columns while it is still in the L1 cache.  benchmarks/hessian_paths.py
# (whole Hessians, one core of a 2-vCPU Zen 3 VM, SciPy's OpenBLAS, N = 10 to 10^4):
# the C loops took 1.06-1.22x less time at P = 41 and 1.04-1.06x less at P = 81; at
# P = 121 the two were within 0.86-1.08x of each other, and dsyrk was faster at P = 201.
_BLAS_HESSIAN = True
_BLAS_HESSIAN_MIN_P = 100
# The native float64 dtype, which Net._run compares by identity on every call.
_F64 = np.dtype(np.float64)
# Per-thread Hessian triangles are only made up to this many parameters.
_MAX_THREADED_HESSIAN_P = 3000


def default_threads() -> int:
    """Threads used over samples: ``$SYMFLOW_NUM_THREADS`` or the CPUs this process may use."""
    env = os.environ.get("SYMFLOW_NUM_THREADS")
    return _env_threads(env) if env else _cpus()


@lru_cache(maxsize=8)
def _env_threads(env: str) -> int:
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise ParameterError(f"SYMFLOW_NUM_THREADS must be a positive integer, got {env!r}")
    return value


@lru_cache(maxsize=1)
def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parts(n: int, threads: int, work: int, kind: str = "gradient") -> int:
    """Number of sample ranges (one per thread) for ``n`` samples of ``work`` units each
    (P for the loss and gradient, P^2 for the Hessian) on at most ``threads`` threads."""
    need = max(_MIN_SAMPLES_PER_THREAD, -(-_MIN_WORK_PER_THREAD[kind] // max(work, 1)))
    return max(1, min(threads, n // need))


@lru_cache(maxsize=None)
def _dsyrk_address() -> int:
    """Address of BLAS dsyrk, from SciPy's Cython BLAS (its published C-level API, the
    BLAS SciPy itself links), for the Hessian kernel to call directly; 0 if unavailable."""
    import ctypes

    from scipy.linalg import cython_blas

    capsule = getattr(cython_blas, "__pyx_capi__", {}).get("dsyrk")
    if capsule is None:  # pragma: no cover - SciPy without it: the kernel's own C loops
        return 0
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype, api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


@lru_cache(maxsize=None)
def _blas_pointers(ffi):
    """``(dsyrk, per-thread BLAS threads setter)`` as C function pointers of a module's
    ``ffi`` (NULL where unavailable), made once per module rather than per call."""
    syrk, local = _dsyrk_address(), _blas_local_threads_address()
    return (ffi.cast("sf_syrk_fn", syrk) if syrk else ffi.NULL,
            ffi.cast("sf_threads_fn", local) if local else ffi.NULL)


@lru_cache(maxsize=None)
def _blas_local_threads_address() -> int:
    """Address of the BLAS's ``int f(int)`` that sets the calling thread's BLAS threads
    (OpenBLAS, SciPy's BLAS), or 0.

    Threaded Hessians call dsyrk from every thread at once; with the BLAS's own threads
    on top the machine is oversubscribed (2-thread runs became slower than 1-thread
    ones), so ``sf_run`` makes its threads' BLAS calls single-threaded with this.
    """
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

    if not _dsyrk_address():  # pragma: no cover - no BLAS calls at all then
        return 0
    try:
        libc = ctypes.CDLL(None)
        info = DlInfo()
        if not libc.dladdr(ctypes.c_void_p(_dsyrk_address()), ctypes.byref(info)):
            return 0
        blas = ctypes.CDLL(info.fname)
    except (OSError, AttributeError):  # pragma: no cover - no dladdr (not glibc/macOS)
        return 0
    for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local"):
        setter = getattr(blas, name, None)
        if setter is not None:
            return ctypes.cast(setter, ctypes.c_void_p).value or 0
    return 0  # pragma: no cover - other BLAS: its threads stay as configured


_ENTRY_LOCK = threading.Lock()


def _python_entry(module):
    """The kernels' CPython entry point of an extension module (a module object with
    ``context`` and ``run``, templates/python_entry.h), or None when the module was
    built without it; installed once per module.  cffi can hand no Python object to C,
    so ``sf_py_install`` puts the functions into a new module of the given name in
    ``sys.modules``, which is taken out again here."""
    with _ENTRY_LOCK:
        entry = getattr(module, "_sf_python_entry", False)
        if entry is False:
            entry = None
            lib = module.lib
            if hasattr(lib, "sf_py_install"):
                name = f"{module.__name__}._sf_python_entry"
                if lib.sf_py_install(name.encode()) == 0:
                    entry = sys.modules.pop(name, None)
            module._sf_python_entry = entry
        return entry


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _owned(arr: np.ndarray) -> np.ndarray:
    """A private, read-only, C-contiguous float64 copy: later changes to the caller's
    array cannot change a Net's results behind its back."""
    out = np.array(arr, dtype=np.float64, order="C", copy=True)
    out.flags.writeable = False
    return out


def _float_matrix(name: str, value, columns: int, hint: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise DataError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (N, {columns}), got shape {arr.shape}; {hint}")
    if arr.shape[1] != columns:
        raise DataError(
            f"{name} has {arr.shape[1]} columns but the architecture needs {columns}; {hint}"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty: at least one sample is needed")
    arr = _owned(arr)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise DataError(
            f"{name} contains {arr[row, col]} at row {row}, column {col} "
            f"({int(bad.sum())} non-finite entries); remove or impute them first"
        )
    return arr


class Net:
    """An MLP on a finite data set with exact loss, gradient and Hessian.

    ``Net(arch, X, Y, weights=None, maxnorm=None, merge=None)``:
    ``X`` is ``(N, din)``; ``Y`` is ``(N, dout)`` (or length N for one output) and,
    for a softmax output, an integer label array of length N.  ``weights`` are
    per-sample weights (normalised by N, not by their sum).  ``maxnorm=c`` adds
    R(p) = (|p|^2/(2P) - c)^3/3 where |p|^2/(2P) > c.  ``merge=(layer, i, j, lam)``
    adds lam/2 |theta_i - theta_j|^2 over the incoming weights and bias of neurons
    i and j (0-based) of ``layer`` (1-based, as in the parameter names ``W1_0_1``).
    ``threads`` splits large data sets over threads (default ``$SYMFLOW_NUM_THREADS``,
    checked when the Net is made and read again by every call with enough samples to
    split, i.e. at least 64; else all available CPUs; the result depends on the split
    only through round-off, and not on the threads' timing). The Hessian's BLAS calls
    are single-threaded (symflow's threads use the cores), except with several threads
    and more than 3000 parameters, where one symflow thread calls the BLAS with its
    threads (per-thread Hessians would need too much memory).

    >>> import numpy as np
    >>> arch = MLP(2, [(4, "tanh", True), (1, "identity", True)])
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> net = Net(arch, X, np.sin(X[:, 0]))
    >>> p = arch.random_params(seed=1)
    >>> net.gradient(p).shape, net.hessian(p).shape
    ((17,), (17, 17))
    """

    def __init__(self, arch: MLP, X, Y, weights=None, maxnorm=None, merge=None, *,
                 threads: int | None = None):
        if not isinstance(arch, MLP):
            raise SpecError(
                f"Net needs an MLP architecture as first argument, got {type(arch).__name__}; "
                f"e.g. symflow.MLP(2, [(10, 'softplus', True), (1, 'identity', True)])"
            )
        self.spec = arch
        self.X = _float_matrix("X", X, arch.din,
                               "one sample per row; for one feature use X.reshape(-1, 1)")
        n = self.X.shape[0]
        self.Y = self._targets(Y, n)
        self.weights = self._weights(weights, n)
        self.maxnorm = self._maxnorm(maxnorm)
        self.merge = self._merge(merge)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ParameterError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        if threads is None:
            default_threads()  # an invalid $SYMFLOW_NUM_THREADS is reported here
        self._attach()

    # -- validation -----------------------------------------------------------------
    def _targets(self, Y, n: int) -> np.ndarray:
        arch = self.spec
        if arch.softmax:
            labels = np.asarray(Y)
            if labels.dtype.kind not in "iu":
                raise DataError(
                    f"a softmax output needs integer class labels, got dtype {labels.dtype}; "
                    f"convert with Y.astype(int) if the values are whole numbers"
                )
            if labels.shape != (n,):
                raise DataError(
                    f"labels must have shape ({n},) (one class index per sample of X), got "
                    f"{labels.shape}"
                )
            bad = (labels < 0) | (labels >= arch.dout)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"label {labels[first]} at sample {first} is out of range: the softmax "
                    f"layer has {arch.dout} classes, labels must be in 0..{arch.dout - 1}"
                )
            return _owned(labels.reshape(n, 1))
        arr = np.asarray(Y)
        if arr.ndim == 1 and arch.dout == 1:
            arr = arr.reshape(-1, 1)
        hint = "one target row per sample of X" + (
            "" if arch.dout > 1 else "; a 1-D array of length N is also accepted")
        arr = _float_matrix("Y", arr, arch.dout, hint)
        if arr.shape[0] != n:
            raise DataError(f"X has {n} samples but Y has {arr.shape[0]}; they must match")
        return arr

    @staticmethod
    def _weights(weights, n: int):
        if weights is None:
            return None
        w = np.asarray(weights)
        if w.dtype.kind not in "fiu" or w.dtype == np.bool_:
            raise DataError(f"sample weights must be real numbers, got dtype {w.dtype}")
        if w.shape != (n,):
            raise DataError(f"sample weights must have shape ({n},), got {w.shape}")
        w = _owned(w)
        if not np.isfinite(w).all() or (w < 0).any():
            raise DataError("sample weights must be finite and non-negative")
        return w

    @staticmethod
    def _maxnorm(maxnorm):
        if maxnorm is None:
            return None
        if not _is_real(maxnorm) or not np.isfinite(maxnorm) or maxnorm < 0:
            raise ParameterError(
                f"maxnorm must be a finite number >= 0 (the allowed mean squared parameter / 2) "
                f"or None, got {maxnorm!r}"
            )
        return float(maxnorm)

    def _merge(self, merge):
        if merge is None:
            return None
        if not isinstance(merge, (tuple, list)) or len(merge) != 4:
            raise ParameterError(f"merge must be (layer, i, j, lam), got {merge!r}")
        layer, i, j, lam = merge
        depth = self.spec.depth
        if not _is_int(layer) or not 1 <= layer < depth:
            raise ParameterError(
                f"merge layer must be a hidden layer number in 1..{depth - 1} (1-based), "
                f"got {layer!r}"
            )
        width = self.spec.layers[layer - 1].width
        for v in (i, j):
            if not _is_int(v) or not 0 <= v < width:
                raise ParameterError(
                    f"merge neurons must be indices in 0..{width - 1} of layer {layer}, "
                    f"got {v!r}"
                )
        if i == j:
            raise ParameterError("merge needs two different neurons i != j")
        if not _is_real(lam) or not np.isfinite(lam) or lam < 0:
            raise ParameterError(
                f"merge strength lam must be a finite number >= 0 (a negative penalty makes the "
                f"loss unbounded below), got {lam!r}"
            )
        nin = self.spec.widths[layer - 1]
        off = self.spec.offsets[layer - 1]
        width_l = self.spec.layers[layer - 1].width

        def incoming(k):
            idx = list(range(off + k * nin, off + (k + 1) * nin))
            if self.spec.layers[layer - 1].bias:
                idx.append(off + width_l * nin + k)
            return np.array(idx)

        return (int(layer), int(i), int(j), float(lam), incoming(i), incoming(j))

    # -- compiled kernels ------------------------------------------------------------
    def _attach(self) -> None:
        module = build.load(self.spec)
        self._ffi, self._lib = module.ffi, module.lib
        ffi = self._ffi
        self._pX = self._buf(self.X)
        self._pY = self._buf(self.Y)
        self._pw = ffi.NULL if self.weights is None else self._buf(self.weights)
        # what _run needs on every call, in one attribute (one lookup instead of seven)
        P = self.spec.nparams
        entry = _python_entry(module)
        run = context = None
        if entry is not None:
            run = entry.run
            context = entry.context(self.X, self.Y, self.weights, _dsyrk_address(),
                                    _blas_local_threads_address())
        self._fixed = (ffi, self._lib.sf_run, self._pX, self._pY, self._pw, self.X.shape[0], P,
                       (P,), (P, P), run, context)

    def __getstate__(self):
        merge = None if self.merge is None else self.merge[:4]
        labels = self.Y[:, 0].astype(np.int64) if self.spec.softmax else self.Y
        return {"spec": self.spec, "X": self.X, "Y": labels, "weights": self.weights,
                "maxnorm": self.maxnorm, "merge": merge, "threads": self.threads}

    def __setstate__(self, state):
        self.__init__(state["spec"], state["X"], state["Y"], state["weights"],
                      state["maxnorm"], state["merge"], threads=state["threads"])

    def __repr__(self) -> str:
        extra = ""
        if self.weights is not None:
            extra += ", weighted"
        if self.maxnorm is not None:
            extra += f", maxnorm={self.maxnorm}"
        if self.merge is not None:
            extra += f", merge={self.merge[:4]}"
        return f"Net({self.spec!r}, N={self.nsamples}{extra})"

    @property
    def nparams(self) -> int:
        return self.spec.nparams

    @property
    def nsamples(self) -> int:
        return self.X.shape[0]

    def subset(self, indices) -> Net:
        """A Net on the rows ``indices`` (same spec, regularisers and compiled kernels)."""
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu" or idx.ndim != 1 or idx.size == 0:
            raise DataError("subset indices must be a non-empty 1-D integer array")
        bad = (idx < 0) | (idx >= self.nsamples)
        if bad.any():
            raise DataError(
                f"subset index {idx[bad][0]} is out of range for {self.nsamples} samples; "
                f"indices must be in 0..{self.nsamples - 1}"
            )
        new = object.__new__(Net)
        new.spec, new.maxnorm, new.merge = self.spec, self.maxnorm, self.merge
        new.threads = self.threads
        new.X, new.Y = _owned(self.X[idx]), _owned(self.Y[idx])
        new.weights = None if self.weights is None else _owned(self.weights[idx])
        new._attach()
        return new

    def _buf(self, array: np.ndarray):
        """cffi pointer to a C-contiguous float64 array (keeps the array alive)."""
        return self._ffi.from_buffer("double[]", array)

    def _p(self, p):
        p = self.spec.check_params(p)
        return p, self._buf(p)

    # -- regularisers (O(P), in NumPy) -------------------------------------------------
    def _reg(self, p, order: int):
        loss, grad, hess = 0.0, None, None
        P = p.shape[0]
        if order >= 1:
            grad = np.zeros(P)
        if order >= 2:
            hess = np.zeros((P, P))
        if self.maxnorm is not None:
            excess = p @ p / (2 * P) - self.maxnorm
            if excess > 0:
                loss += excess**3 / 3
                if order >= 1:
                    grad += excess**2 * p / P
                if order >= 2:
                    hess += 2 * excess * np.outer(p, p) / P**2
                    hess[np.diag_indices(P)] += excess**2 / P
        if self.merge is not None:
            lam, a, b = self.merge[3], self.merge[4], self.merge[5]
            diff = p[a] - p[b]
            loss += lam / 2 * (diff @ diff)
            if order >= 1:
                grad[a] += lam * diff
                grad[b] -= lam * diff
            if order >= 2:
                hess[a, a] += lam
                hess[b, b] += lam
                hess[a, b] -= lam
                hess[b, a] -= lam
        return loss, grad, hess

    # -- public numerics ---------------------------------------------------------------
    def _no_workspace(self, what: str) -> MemoryError:
        return MemoryError(f"the {what} kernel could not allocate its workspace "
                           f"(P={self.spec.nparams}); free memory or use fewer parameters")

    def _run(self, kind: int, what: str, p):
        """``(loss, gradient, Hessian)`` at ``p`` over all samples, with the regularisers:
        kind 0 the loss (gradient and Hessian None), 1 also the gradient, 2 also the
        Hessian (mirrored from the lower triangle), 3 the Hessian alone (loss and
        gradient None: ``sf_run`` sums them into a buffer of its own), on the module's C
        threads (one range of samples per thread; one range for Hessians of more than
        _MAX_THREADED_HESSIAN_P parameters, whose per-thread triangles would be large).

        Lean, because it runs on every call and at N = 10 the Python around the kernel
        is a good part of a call.  The kernels' CPython entry point (``run``, see
        templates/python_entry.h) takes a C-contiguous float64 ``p`` of the right length
        as it is (``sf_run`` checks that it is finite, and then check_params names the
        bad entry) and returns new arrays; it returns None for any other ``p``, which
        then goes through check_params.  Without that entry point (a module built
        without the full C API), the same call goes through cffi."""
        fixed = self._fixed
        N, P = fixed[5], fixed[6]
        ranges = 1
        if N >= 2 * _MIN_SAMPLES_PER_THREAD and (kind < 2 or P <= _MAX_THREADED_HESSIAN_P):
            threads = self.threads or default_threads()  # else one range at any thread count
            if threads > 1:
                ranges = _parts(N, threads, *((P * P, "hessian") if kind >= 2 else (P, "gradient")))
        # symflow threads over samples, so its BLAS calls run single-threaded (blas 1; also
        # when the data is too small to split: BLAS threads would not pay there either,
        # and they spin on the cores after each call); unsplit large-P Hessians use the
        # BLAS's threads instead (blas 2)
        blas = 0
        if kind >= 2 and P >= _BLAS_HESSIAN_MIN_P and _BLAS_HESSIAN and _dsyrk_address():
            split = P <= _MAX_THREADED_HESSIAN_P
            blas = 1 if split or (self.threads or default_threads()) == 1 else 2
        run = fixed[9]
        if run is not None:
            out = run(fixed[10], kind, p, ranges, blas, _CHUNK_BYTES)
            if type(out) is not tuple:
                if out is None:  # not a C-contiguous native float64 vector of P entries
                    p = self.spec.check_params(p)  # raises, or a contiguous float64 copy
                    out = run(fixed[10], kind, p, ranges, blas, _CHUNK_BYTES)
                if type(out) is not tuple:
                    self._failed(out, p, what)
        else:
            out = self._run_cffi(kind, what, p, ranges, blas)
        if self.maxnorm is None and self.merge is None:
            return out
        value, grad, hess = out
        rl, rg, rh = self._reg(p, kind if kind < 3 else 2)
        if kind < 3:
            value += rl
        if grad is not None:
            grad += rg
        if hess is not None:
            hess += rh
        return value, grad, hess

    def _failed(self, status, p, what: str):
        """Raise for a kernel call that returned ``status`` instead of its results."""
        if status == 2:  # a parameter is not finite: check_params names it
            self.spec.check_params(p)
            raise RuntimeError("sf_run found a non-finite parameter that check_params accepted")
        if status == 1:
            raise self._no_workspace(what)
        raise RuntimeError(f"the {what} kernel returned {status!r}")

    def _run_cffi(self, kind: int, what: str, p, ranges: int, blas: int):
        """``_run``'s kernel call through cffi: a float64 vector of the right length is
        passed as it is (the native dtype compared by identity, C-contiguity left to
        ``from_buffer``), anything else goes through ``check_params``; the outputs come
        from ``numpy.empty`` (``sf_run`` zeroes them)."""
        ffi, run, pX, pY, pw, N, P, pshape, hshape = self._fixed[:9]
        pp = None
        if type(p) is np.ndarray and p.dtype is _F64 and p.shape == pshape:
            try:
                pp = ffi.from_buffer("double[]", p)
            except ValueError:  # not C-contiguous: check_params makes a contiguous copy
                pass
        if pp is None:
            p, pp = self._p(p)
        grad = hess = None
        gp = hp = syrk = local = NULL = ffi.NULL
        if kind < 3:
            lp = loss = ffi.new("double[1]")
            if kind:
                grad = np.empty(P)
                gp = ffi.from_buffer("double[]", grad)
        else:
            lp, loss = NULL, None
        if kind >= 2:
            hess = np.empty(hshape)
            hp = ffi.from_buffer("double[]", hess)
            if blas:
                syrk, local = _blas_pointers(ffi)
                if blas == 2:
                    local = NULL
        status = run(kind if kind < 3 else 2, pp, pX, pY, pw, N, 0, N, ranges, lp, gp, hp, syrk,
                     _CHUNK_BYTES, local)
        if status:
            self._failed(status, p, what)
        return (loss[0] if kind < 3 else None), grad, hess

    def loss(self, p) -> float:
        """Loss at ``p``."""
        return float(self._run(0, "loss", p)[0])

    def loss_and_gradient(self, p) -> tuple[float, np.ndarray]:
        """``(loss, gradient)`` at ``p`` in one pass over the data."""
        value, grad, _ = self._run(1, "loss and gradient", p)
        return float(value), grad

    def gradient(self, p) -> np.ndarray:
        """Gradient of the loss at ``p``."""
        return self.loss_and_gradient(p)[1]

    def loss_gradient_hessian(self, p) -> tuple[float, np.ndarray, np.ndarray]:
        """``(loss, gradient, Hessian)`` at ``p``.

        The compiled kernel sums the sparse second-order part of the Hessian over
        blocks of samples and writes the weighted Jacobian columns of the Gauss-Newton
        part, which it accumulates with symflow's own register-tiled C loops below 100
        parameters (and without SciPy's BLAS) and with BLAS rank-k updates (``dsyrk``,
        called from C) from 100 parameters on.
        """
        value, grad, hess = self._run(2, "Hessian", p)
        return float(value), grad, hess

    def hessian(self, p) -> np.ndarray:
        """Exact Hessian of the loss at ``p`` (P x P, symmetric).  The same kernel as
        ``loss_gradient_hessian``, without a gradient and a loss to return."""
        fixed = self._fixed
        # the common small case in short: one range of samples (too few to split) and
        # symflow's own Gauss-Newton loops (too few parameters for dsyrk), no regulariser;
        # everything else, and any p the entry point does not take, through _run
        if (fixed[5] < 2 * _MIN_SAMPLES_PER_THREAD and fixed[6] < _BLAS_HESSIAN_MIN_P
                and fixed[9] is not None and self.maxnorm is None and self.merge is None):
            out = fixed[9](fixed[10], 3, p, 1, 0, _CHUNK_BYTES)
            if type(out) is tuple:
                return out[2]
        return self._run(3, "Hessian", p)[2]

    def hessian_spectrum(self, p) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors (columns) of the Hessian at ``p``."""
        return np.linalg.eigh(self.hessian(p))

    def predict(self, p, X=None) -> np.ndarray:
        """Network outputs ``(N, dout)`` (class probabilities for softmax) on ``X`` or the data."""
        p, pp = self._p(p)
        if X is None:
            X, pX = self.X, self._pX
        else:
            X = _float_matrix("X", X, self.spec.din, "one sample per row")
            pX = self._buf(X)
        out = np.empty((X.shape[0], self.spec.dout))
        if self._lib.sf_predict(pp, pX, X.shape[0], self._buf(out)) != 0:
            raise self._no_workspace("prediction")
        return out

    def activation(self, layer: int, neuron: int, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compiled activation of ``(layer, neuron)`` and its two derivatives at points ``x``."""
        x = np.ascontiguousarray(x, dtype=np.float64).ravel()
        f, d1, d2 = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        status = self._lib.sf_activation(layer, neuron, self._buf(x), x.size,
                                         self._buf(f),
                                         self._buf(d1),
                                         self._buf(d2))
        if status != 0:
            raise SpecError(f"layer {layer}, neuron {neuron} has no scalar activation")
        return f, d1, d2

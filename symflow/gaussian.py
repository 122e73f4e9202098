"""Infinite Gaussian input: exact teacher-student losses of one-hidden-layer networks.

``GaussianNet(teacher, student_arch)`` is the loss of design.md for infinite data,

    L(p) = E_{x ~ N(0, I)} [ sum_o (f_o(x; p) - g_o(x))^2 ],

with f the student (flat parameters ``p``, layout of design.md) and g a fixed
:class:`TeacherNet`.  Both are one hidden layer with an identity output layer.
Writing h_i = w_i.x + b_i, the loss is a weighted sum of E[a(h_i) b(h_j)] over
pairs of neurons, of E[a(h_i)^2] and of E[a(h_i)]; the pre-activations are jointly
Gaussian with means b and covariances w_i.w_j, so each term depends on five
numbers only.  Closed forms come from SymPy (:mod:`symflow.symbolic.gaussian`),
everything else from a trapezoidal rule in C (exponentially convergent for the
smooth activations it accepts); derivatives to the weights are the chain rule in
``templates/gaussian.c.j2``.

``gauss_hermite_net(teacher, student_arch, n)`` is the finite-data alternative of
MLPGradientFlow.jl: a :class:`~symflow.problems.Net` on a Gauss-Hermite product grid
(input dimension <= 2) whose weighted loss approximates the same expectation.
"""

from __future__ import annotations

import numpy as np

from . import build
from .errors import DataError, GaussianPairError, ParameterError, SpecError
from .spec import MLP

__all__ = ["TeacherNet", "GaussianNet", "gauss_hermite_net"]

#: Target accuracy of the quadrature rule (closed forms do not use it).
DEFAULT_QUADRATURE_EPS = 1e-16


def _one_hidden_layer(arch, who: str) -> None:
    if not isinstance(arch, MLP):
        raise SpecError(f"the {who} must be a symflow.MLP, got {type(arch).__name__}")
    if arch.depth != 2:
        raise SpecError(
            f"the {who} has {arch.depth} layers; infinite-Gaussian-input losses need exactly "
            f"one hidden layer and an identity output layer, e.g. "
            f"MLP({arch.din}, [(k, 'erf', True), (1, 'identity', True)])")
    out = arch.layers[1]
    if any(a != "identity" for a in out.activations()):
        raise SpecError(
            f"the {who}'s output layer must use the identity activation (got "
            f"{out.activation!r}); put the nonlinearity in the hidden layer")


class TeacherNet:
    """A fixed one-hidden-layer network ``g(x)``: an architecture and its parameters.

    >>> teacher = TeacherNet(MLP(2, [(2, "erf", False), (1, "identity", False)]),
    ...                      [1.0, 0.0, 0.0, 1.0, 1.0, -1.0])
    >>> teacher([[0.0, 0.0]]).tolist()
    [[0.0]]
    """

    def __init__(self, arch: MLP, params):
        _one_hidden_layer(arch, "teacher")
        self.arch = arch
        p = arch.check_params(params)
        self.params = p.copy()
        self.params.setflags(write=False)

    def __repr__(self) -> str:
        return f"TeacherNet({self.arch!r}, <{self.arch.nparams} parameters>)"

    def __reduce__(self):
        return (TeacherNet, (self.arch, np.array(self.params)))

    def blocks(self):
        """``(V, c, A, d)``: hidden weights (r, din), biases, output weights, output biases."""
        (V, c), (A, d) = self.arch.unflatten(self.params)
        r, dout = V.shape[0], A.shape[0]
        c = np.zeros(r) if c is None else c
        d = np.zeros(dout) if d is None else d
        return (np.ascontiguousarray(V, dtype=np.float64), np.ascontiguousarray(c),
                np.ascontiguousarray(A, dtype=np.float64), np.ascontiguousarray(d))

    def __call__(self, X) -> np.ndarray:
        """Teacher outputs ``(N, dout)`` on inputs ``X`` of shape ``(N, din)``."""
        from .problems import Net, _float_matrix

        X = _float_matrix("X", X, self.arch.din, "one sample per row")
        net = Net(self.arch, X, np.zeros((X.shape[0], self.arch.dout)))
        return net.predict(self.params)


class GaussianNet:
    """Teacher-student loss for infinite standard-Gaussian input, with its derivatives.

    ``GaussianNet(teacher, student_arch)``; ``teacher`` is a :class:`TeacherNet`,
    ``student_arch`` an :class:`~symflow.spec.MLP` with one hidden layer (any
    activations, per-neuron allowed, hidden and output bias optional) and an
    identity output layer with as many outputs as the teacher.

    >>> import numpy as np
    >>> teacher = TeacherNet(MLP(3, [(2, "erf", False), (1, "identity", False)]),
    ...                      np.r_[np.eye(3)[:2].ravel(), 1.0, 1.0])
    >>> net = GaussianNet(teacher, MLP(3, [(2, "erf", False), (1, "identity", False)]))
    >>> abs(net.loss(teacher.params)) < 1e-15          # zero up to round-off
    True
    """

    def __init__(self, teacher: TeacherNet, student_arch: MLP, *,
                 quadrature_eps: float = DEFAULT_QUADRATURE_EPS):
        if not isinstance(teacher, TeacherNet):
            raise SpecError(
                f"the teacher must be a symflow.TeacherNet(arch, params), got "
                f"{type(teacher).__name__}")
        _one_hidden_layer(student_arch, "student")
        if student_arch.din != teacher.arch.din:
            raise SpecError(
                f"student input dimension {student_arch.din} differs from the teacher's "
                f"{teacher.arch.din}; both see the same x ~ N(0, I_din)")
        if student_arch.dout != teacher.arch.dout:
            raise SpecError(
                f"student has {student_arch.dout} outputs but the teacher has "
                f"{teacher.arch.dout}; the loss compares them output by output")
        if not (isinstance(quadrature_eps, float) and 1e-18 <= quadrature_eps <= 1e-4):
            raise ParameterError(
                f"quadrature_eps must be a float in [1e-18, 1e-4], got {quadrature_eps!r}")
        self.teacher, self.arch, self.quadrature_eps = teacher, student_arch, quadrature_eps
        self._attach()

    # -- set-up ------------------------------------------------------------------------
    def _attach(self) -> None:
        from .emit_gaussian import GaussianKernels

        s_acts = self.arch.layers[0].activations()
        t_acts = self.teacher.arch.layers[0].activations()
        distinct = sorted(set(s_acts) | set(t_acts), key=_sort_key)
        self._check_pairs(sorted(set(s_acts), key=_sort_key), sorted(set(t_acts), key=_sort_key))
        index = {a: i for i, a in enumerate(distinct)}
        self.kernels = GaussianKernels(distinct)
        module = build.load(self.kernels)
        self._ffi, self._lib = module.ffi, module.lib
        self._sact = np.array([index[a] for a in s_acts], dtype=np.intc)
        self._tact = np.array([index[a] for a in t_acts], dtype=np.intc)
        V, c, A, d = self.teacher.blocks()
        self._V, self._c, self._A, self._d = V, c, A, d
        arch = self.arch
        self._dims = np.array([arch.layers[0].width, arch.din, arch.dout, V.shape[0],
                               int(arch.layers[0].bias), int(arch.layers[1].bias)], dtype=np.intc)
        self._tconst, self._nu = self._teacher_terms(self.quadrature_eps)

    def _teacher_terms(self, eps: float):
        """E[sum_o g_o^2] and E[psi_j] of the teacher (computed once per net)."""
        nu = np.zeros(self._V.shape[0])
        const = self._lib.sf_gauss_teacher(
            self._ibuf(self._dims), self._ibuf(self._tact), self._buf(self._V),
            self._buf(self._c), self._buf(self._A), self._buf(self._d), eps, self._buf(nu))
        return const, nu

    @staticmethod
    def _check_pairs(s_acts, t_acts) -> None:
        from .symbolic.gaussian.families import is_closed, is_smooth

        for group, partners in ((s_acts, s_acts), (s_acts, t_acts), (t_acts, t_acts)):
            for a in group:
                for b in partners:
                    if is_closed(a) and is_closed(b):
                        continue
                    for x, y in ((a, b), (b, a)):
                        if not is_smooth(x):
                            raise GaussianPairError(
                                f"no closed form for the Gaussian expectation of {x!r} times "
                                f"{y!r}, and {x!r} has a kink, so quadrature would not reach "
                                f"full accuracy; pair {x!r} only with closed-form activations "
                                f"(identity, polynomials, erf, normal_cdf, gelu, relu, step, "
                                f"sign, selu, exp) or use a smooth activation instead")

    def _buf(self, array):
        return self._ffi.from_buffer("double[]", array)

    def _ibuf(self, array):
        return self._ffi.from_buffer("int[]", array)

    def __getstate__(self):
        return {"teacher": self.teacher, "arch": self.arch,
                "quadrature_eps": self.quadrature_eps}

    def __setstate__(self, state):
        self.teacher, self.arch = state["teacher"], state["arch"]
        self.quadrature_eps = state["quadrature_eps"]
        self._attach()

    def __repr__(self) -> str:
        return f"GaussianNet({self.teacher!r}, {self.arch!r})"

    @property
    def nparams(self) -> int:
        return self.arch.nparams

    # -- evaluation ------------------------------------------------------------------------
    def _eval(self, p, order: int, eps: float | None = None):
        p = self.arch.check_params(p)
        tconst, nu = self._tconst, self._nu
        if eps is None:
            eps = self.quadrature_eps
        else:
            tconst, nu = self._teacher_terms(eps)
        P = p.shape[0]
        loss = np.zeros(1)
        grad = np.empty(P) if order >= 1 else None
        hess = np.empty((P, P)) if order >= 2 else None
        null = self._ffi.NULL
        rc = self._lib.sf_gauss_eval(
            self._buf(p), self._ibuf(self._dims), self._ibuf(self._sact), self._ibuf(self._tact),
            self._buf(self._V), self._buf(self._c), self._buf(self._A), self._buf(self._d),
            self._buf(nu), tconst, eps,
            self._buf(loss), null if grad is None else self._buf(grad),
            null if hess is None else self._buf(hess))
        if rc != 0:
            raise MemoryError(f"GaussianNet: out of memory for {P} parameters")
        return float(loss[0]), grad, hess

    def loss(self, p) -> float:
        """L(p) = E_x[sum_o (f_o(x; p) - g_o(x))^2] for x ~ N(0, I)."""
        return self._eval(p, 0)[0]

    def loss_and_gradient(self, p) -> tuple[float, np.ndarray]:
        loss, grad, _ = self._eval(p, 1)
        return loss, grad

    def gradient(self, p) -> np.ndarray:
        return self._eval(p, 1)[1]

    def loss_gradient_hessian(self, p) -> tuple[float, np.ndarray, np.ndarray]:
        return self._eval(p, 2)

    def hessian(self, p) -> np.ndarray:
        """Exact Hessian (P x P, symmetric)."""
        return self._eval(p, 2)[2]

    def hessian_spectrum(self, p) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors (columns) of the Hessian at ``p``."""
        return np.linalg.eigh(self.hessian(p))

    @property
    def uses_quadrature(self) -> bool:
        """Whether any pair of activations is integrated numerically."""
        from .symbolic.gaussian.families import is_closed

        acts = set(self.arch.layers[0].activations()) | set(self.teacher.arch.layers[0].activations())
        return not all(is_closed(a) for a in acts)

    def quadrature_error(self, p) -> float:
        """Estimated absolute error of ``loss(p)`` from the quadrature (0 for closed forms).

        The loss (teacher terms included) is recomputed with a rule whose target
        accuracy is 1e-4 times finer; the difference estimates the error of the
        default rule.
        """
        if not self.uses_quadrature:
            return 0.0
        fine = max(self.quadrature_eps * 1e-4, 1e-18)
        return abs(self._eval(p, 0)[0] - self._eval(p, 0, fine)[0])

    def loss_expression(self, max_params: int = 50):
        """The whole loss as a SymPy expression of the student's named parameters.

        Parameter names are those of ``arch.parameter_names()`` (``W1_0_1``, ``b1_0``,
        ...); the teacher enters with its numbers.  Only for closed-form activations
        and at most ``max_params`` student parameters.
        """
        import sympy as sp

        from .symbolic.gaussian.engine import det_symbol, params
        from .symbolic.gaussian.pairs import (
            diag_expression, is_closed, mean_expression, pair_expression,
        )

        s_acts = self.arch.layers[0].activations()
        t_acts = self.teacher.arch.layers[0].activations()
        for act in set(s_acts) | set(t_acts):
            if not is_closed(act):
                raise GaussianPairError(
                    f"{act!r} has no closed-form Gaussian expectation (it is integrated "
                    f"numerically), so the loss has no SymPy expression; use net.loss(p)")
        if self.nparams > max_params:
            raise SpecError(
                f"the student has {self.nparams} parameters; loss_expression is limited to "
                f"max_params={max_params} (raise it to force a larger expression)")
        m1, m2, s11, s12, s22 = params()
        D = det_symbol()
        names = iter(sp.symbols(self.arch.parameter_names(), real=True))
        k, din, dout = self.arch.layers[0].width, self.arch.din, self.arch.dout
        W = [[next(names) for _ in range(din)] for _ in range(k)]
        b = [next(names) for _ in range(k)] if self.arch.layers[0].bias else [0] * k
        W2 = [[next(names) for _ in range(k)] for _ in range(dout)]
        b2 = [next(names) for _ in range(dout)] if self.arch.layers[1].bias else [0] * dout
        V, c, A, d = ([[sp.Float(float(x), 17) for x in row] for row in self._V],
                      [sp.Float(float(x), 17) for x in self._c],
                      [[sp.Float(float(x), 17) for x in row] for row in self._A],
                      [sp.Float(float(x), 17) for x in self._d])

        def dot(x, y):
            return sum((xi * yi for xi, yi in zip(x, y)), sp.S.Zero)

        def pair(a, b_, ma, mb, wa, wb):
            saa, sab, sbb = dot(wa, wa), dot(wa, wb), dot(wb, wb)
            return pair_expression(a, b_).subs(D, saa * sbb - sab**2).subs(
                {m1: ma, m2: mb, s11: saa, s12: sab, s22: sbb}, simultaneous=True)

        def one(expr, m, w):
            return expr.subs({m1: m, s11: dot(w, w)}, simultaneous=True)

        mu = [one(mean_expression(a), b[i], W[i]) for i, a in enumerate(s_acts)]
        nu = [sp.Float(float(x), 17) for x in self._nu]
        total = sp.Float(float(self._tconst), 17)
        for o in range(dout):
            for i, a in enumerate(s_acts):
                total += W2[o][i] ** 2 * one(diag_expression(a), b[i], W[i])
                for l in range(i + 1, k):
                    total += 2 * W2[o][i] * W2[o][l] * pair(a, s_acts[l], b[i], b[l], W[i], W[l])
                for j, t in enumerate(t_acts):
                    total -= 2 * W2[o][i] * A[o][j] * pair(a, t, b[i], c[j], W[i], V[j])
                total += 2 * (b2[o] - d[o]) * W2[o][i] * mu[i]
            total += b2[o] ** 2 - 2 * b2[o] * d[o] - 2 * b2[o] * dot(A[o], nu)
        return total

    def pair(self, a, b, m1, m2, s11, s12, s22, D=None) -> np.ndarray:
        """E[a(h1) b(h2)] and its 20 partial derivatives (order of PAIR_OUTPUTS).

        ``a`` and ``b`` are activations used by this net; (h1, h2) ~ N((m1, m2),
        [[s11, s12], [s12, s22]]).
        """
        acts = self.kernels.acts
        for x in (a, b):
            if x not in acts:
                raise SpecError(f"activation {x!r} is not used by this net (it has {list(acts)})")
        out = np.zeros(21)
        if D is None:
            D = max(float(s11) * float(s22) - float(s12) ** 2, 0.0)
        self._lib.sf_gauss_pair(acts.index(a), acts.index(b), float(m1), float(m2), float(s11),
                                float(s12), float(s22), float(D), self.quadrature_eps,
                                self._buf(out))
        return out


def _sort_key(act) -> str:
    from .spec import _activation_key

    return _activation_key(act)


def gauss_hermite_net(teacher: TeacherNet, student_arch: MLP, n: int = 40, **net_options):
    """A finite-data :class:`~symflow.problems.Net` on an ``n``-point Gauss-Hermite grid.

    For input dimension ``din <= 2`` the grid is the tensor product of the ``n``-point
    Gauss-Hermite rule for N(0, 1) (``numpy.polynomial.hermite_e``), ``n**din``
    samples with weights such that the Net's loss, (1/N) sum_n w_n |f(x_n) - g(x_n)|^2,
    is the Gauss-Hermite approximation of E_x |f(x) - g(x)|^2.  The targets are the
    teacher's outputs at the grid points, so any teacher function works.
    """
    from .problems import Net

    if not isinstance(teacher, TeacherNet) and not callable(teacher):
        raise SpecError("teacher must be a TeacherNet or a function mapping (N, din) to (N, dout)")
    if not isinstance(student_arch, MLP):
        raise SpecError(f"student_arch must be a symflow.MLP, got {type(student_arch).__name__}")
    din = student_arch.din
    if din > 2:
        raise SpecError(
            f"gauss_hermite_net needs input dimension <= 2 (the grid has n**din points); got "
            f"din = {din}. Use GaussianNet for exact infinite-data losses in any dimension")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= 2000:
        raise ParameterError(f"n must be an integer in [2, 2000], got {n!r}")
    z, w = np.polynomial.hermite_e.hermegauss(int(n))
    w = w / np.sqrt(2 * np.pi)
    grids = np.meshgrid(*([z] * din), indexing="ij")
    X = np.stack([g.ravel() for g in grids], axis=1)
    W = np.ones(X.shape[0])
    for g in np.meshgrid(*([w] * din), indexing="ij"):
        W = W * g.ravel()
    Y = np.asarray(teacher(X), dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.shape != (X.shape[0], student_arch.dout):
        raise DataError(
            f"teacher returned shape {Y.shape} on the grid; expected {(X.shape[0], student_arch.dout)}")
    return Net(student_arch, X, Y, weights=W * X.shape[0], **net_options)

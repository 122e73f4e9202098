"""An independent NumPy reference problem for the training tests.

A one-hidden-layer MLP ``f(x) = Σ_j a_j σ(w_j·x + b_j) + c`` with one output and
the MSE loss ``L = (1/N) Σ_n w_n (f(x_n) − y_n)²``, gradient and exact Hessian
written out by hand here (no SymPy, no symflow). The parameter layout is
symflow's: ``W1`` (k, d) row-major, ``b1`` (k), ``W2`` (1, k), ``b2`` (1), so the
same vectors can be fed to ``symflow.Net`` for cross-checks.

Lives in its own module (not a test file) so that spawned worker processes and
Dask workers can unpickle it: pytest puts ``tests/`` on ``sys.path`` and
multiprocessing passes ``sys.path`` on to its children.
"""

from __future__ import annotations

import numpy as np


def _act(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if name == "softplus":
        s = 1.0 / (1.0 + np.exp(-z))
        return np.logaddexp(0.0, z), s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1.0 - t * t, -2.0 * t * (1.0 - t * t)
    raise ValueError(name)


class ToyMLP:
    """Loss, gradient, Hessian of a 1-hidden-layer, 1-output MLP on data (X, y)."""

    def __init__(self, X, y, width, activation="softplus", weights=None, fail_after=None):
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)
        self.N, self.d = self.X.shape
        self.k = int(width)
        self.activation = activation
        self.weights = (np.ones(self.N) if weights is None
                        else np.asarray(weights, dtype=np.float64).reshape(-1))
        self.nparams = self.k * self.d + 2 * self.k + 1
        # raise KeyboardInterrupt from the gradient after this many calls (tests Ctrl-C)
        self.fail_after = fail_after
        self.calls = 0

    # --- layout ---------------------------------------------------------
    def unpack(self, p):
        k, d = self.k, self.d
        W = p[: k * d].reshape(k, d)
        b = p[k * d: k * d + k]
        a = p[k * d + k: k * d + 2 * k]
        c = p[-1]
        return W, b, a, c

    def pack(self, W, b, a, c):
        return np.concatenate([np.ravel(W), np.ravel(b), np.ravel(a), [float(c)]])

    @property
    def nsamples(self):
        return self.N

    def subset(self, indices):
        idx = np.asarray(indices)
        return ToyMLP(self.X[idx], self.y[idx], self.k, self.activation, self.weights[idx])

    # --- numerics -------------------------------------------------------
    def predict(self, p, X=None):
        X = self.X if X is None else np.asarray(X, dtype=np.float64)
        W, b, a, c = self.unpack(np.asarray(p, dtype=np.float64))
        h, _, _ = _act(self.activation, X @ W.T + b)
        return h @ a + c

    def loss(self, p):
        r = self.predict(p) - self.y
        return float(np.sum(self.weights * r * r) / self.N)

    def _jacobian(self, p):
        W, b, a, c = self.unpack(p)
        z = self.X @ W.T + b
        h, dh, ddh = _act(self.activation, z)
        g = a * dh  # (N, k)
        J = np.concatenate(
            [(g[:, :, None] * self.X[:, None, :]).reshape(self.N, -1), g, h, np.ones((self.N, 1))],
            axis=1,
        )
        return J, h, dh, ddh, a, c

    def loss_and_gradient(self, p):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        p = np.asarray(p, dtype=np.float64)
        J, h, *_ , c = self._jacobian(p)
        r = h @ self.unpack(p)[2] + c - self.y
        wr = self.weights * r
        return float(np.sum(wr * r) / self.N), 2.0 / self.N * (J.T @ wr)

    def gradient(self, p):
        return self.loss_and_gradient(p)[1]

    def hessian(self, p):
        p = np.asarray(p, dtype=np.float64)
        J, h, dh, ddh, a, c = self._jacobian(p)
        r = h @ a + c - self.y
        s = self.weights * r
        H = J.T @ (self.weights[:, None] * J)
        k, d = self.k, self.d
        U = np.concatenate([self.X, np.ones((self.N, 1))], axis=1)  # u_n = (x_n, 1)
        for j in range(k):
            wb = np.r_[np.arange(j * d, (j + 1) * d), k * d + j]  # indices of (w_j, b_j)
            ia = k * d + k + j
            M = a[j] * (U.T @ ((s * ddh[:, j])[:, None] * U))
            H[np.ix_(wb, wb)] += M
            v = U.T @ (s * dh[:, j])
            H[wb, ia] += v
            H[ia, wb] += v
        return 2.0 / self.N * H


def teacher_student(seed=0, d=2, k_teacher=2, k_student=2, N=200, activation="softplus"):
    """Gaussian inputs, targets from a random teacher; returns (student problem, teacher p)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    teacher = ToyMLP(X, np.zeros(N), k_teacher, activation)
    pt = rng.standard_normal(teacher.nparams)
    y = teacher.predict(pt)
    return ToyMLP(X, y, k_student, activation), pt


def rk4(grad, p0, t_end, nsteps, tauinv=1.0):
    """Classical fixed-step Runge–Kutta 4 for dp/dt = −tauinv ⊙ grad(p)."""
    p = np.array(p0, dtype=np.float64)
    h = t_end / nsteps

    def f(q):
        return -tauinv * grad(q)

    for _ in range(nsteps):
        k1 = f(p)
        k2 = f(p + 0.5 * h * k1)
        k3 = f(p + 0.5 * h * k2)
        k4 = f(p + h * k3)
        p = p + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return p

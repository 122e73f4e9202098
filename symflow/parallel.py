"""Several starting points in parallel, on any :class:`concurrent.futures.Executor`.

The problem object travels to the workers by pickling: a ``symflow.Net`` pickles
its spec and data, and a worker loads the compiled module from the cache (or
rebuilds it). The default executor is a local process pool with the ``spawn``
start method, which is safe with threads and BLAS pools in the parent; a Dask
cluster is used through ``client.get_executor()``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import traceback
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .dynamics import _check_names, train
from .result import Result

__all__ = ["train_many", "FailedStart"]


@dataclass
class FailedStart:
    """A start of :func:`train_many` that raised instead of returning a Result.

    Example:
        >>> f = FailedStart(index=2, error="ValueError: bad", traceback="...")
        >>> f.ok, f.index
        (False, 2)
    """

    index: int
    error: str
    traceback: str
    ok = False

    def __repr__(self) -> str:
        return f"FailedStart(index={self.index}, error={self.error!r})"


def _run_one(problem: Any, p0: np.ndarray, options: dict[str, Any],
             index: int) -> Result | FailedStart:
    # Runs in the worker: exceptions become data so that one bad start never
    # takes the others down (and nothing unpicklable travels back).
    try:
        return train(problem, p0, **options)
    except Exception as exc:  # noqa: BLE001 - reported in the caller's slot
        return FailedStart(index, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def train_many(problem: Any, inits: Iterable[Any],
               executor: concurrent.futures.Executor | None = None,
               max_workers: int | None = None, **options: Any) -> list[Result | FailedStart]:
    """Run :func:`symflow.train` from every point in ``inits``, in parallel.

    Scripts that use the default (spawn-based) pool must guard their entry point
    with ``if __name__ == "__main__":``, as for any spawn-based multiprocessing.

    ``executor`` may be any :class:`concurrent.futures.Executor` (a process pool,
    a thread pool, ``dask.distributed.Client(...).get_executor()``); it is not
    shut down here. Without one, a local spawn-based process pool with
    ``max_workers`` (default: number of CPUs, at most the number of starts) is
    created and closed. Results come back in the order of ``inits``; a start
    that fails yields a :class:`FailedStart` in its slot (``.ok`` is False on
    it, True on a Result). ``verbosity`` defaults to 0 here.

    Example:
        >>> import numpy as np
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> class Quadratic:
        ...     nparams = 1
        ...     def loss(self, p): return float(p @ p)
        ...     def gradient(self, p): return 2 * p
        ...     def hessian(self, p): return 2 * np.eye(1)
        >>> with ThreadPoolExecutor(2) as ex:
        ...     out = train_many(Quadratic(), [[1.0], [-2.0]], executor=ex, maxT=1.0)
        >>> [r.ok for r in out], [bool(abs(r.x[0]) < 1e-12) for r in out]
        ([True, True], [True, True])
    """
    _check_names(options)  # fail fast, before anything is shipped
    options.setdefault("verbosity", 0)
    starts = [np.array(p, dtype=np.float64, copy=True).reshape(-1) for p in inits]
    if not starts:
        return []
    own = executor is None
    if own:
        workers = max_workers or min(len(starts), os.cpu_count() or 1)
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    futures: list[concurrent.futures.Future[Any]] = []
    try:
        for i, p in enumerate(starts):
            futures.append(executor.submit(_run_one, problem, p, options, i))
        return [_collect(i, fut) for i, fut in enumerate(futures)]
    except KeyboardInterrupt:
        # Ctrl-C reaches local workers too, whose train() then returns what it
        # has; give them a moment, keep every finished start, mark the rest.
        for fut in futures:
            fut.cancel()
        concurrent.futures.wait(futures, timeout=_GRACE_SECONDS)
        return [_collect(i, fut) if fut.done() and not fut.cancelled()
                else FailedStart(i, "KeyboardInterrupt: interrupted before this start finished", "")
                for i, fut in enumerate(futures)]
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


_GRACE_SECONDS = 5.0


def _collect(index: int, fut: concurrent.futures.Future[Any]) -> Result | FailedStart:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - e.g. pickling errors, a dead worker
        return FailedStart(index, f"{type(exc).__name__}: {exc}",
                           "".join(traceback.format_exception(exc)))

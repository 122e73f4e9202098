/* ---- A CPython entry point for Net's calls (only inside the extension module) ----
 *
 * cffi calls sf_run well, but at N = 10 a Python call of it cost more than the kernel:
 * ffi.from_buffer for p and for each output (~0.2 us each), numpy.empty, and the
 * conversion of fifteen arguments (~0.4 us), ~1.9 us around a 2 us Hessian at P = 41
 * (one core, Zen 4).  `run` below takes p and returns new output arrays with the
 * CPython and NumPy C APIs instead: ~0.3 us around the kernel.  (A first version made
 * the outputs with numpy.empty and read p and them through the buffer protocol; NumPy's
 * PyArray_SimpleNew and PyArray_DATA took another 0.3 us off a call, mostly numpy.empty's
 * argument parsing and the buffer exports.)  This part is compiled only with the full C
 * API (symflow builds with _CFFI_NO_LIMITED_API and NumPy's include directory; the
 * module's cache key holds NumPy's version); without it, or when NumPy's C API does not
 * load, symflow keeps calling sf_run through cffi.
 *
 * sf_py_install(name) puts the functions into a new module `name` in sys.modules, from
 * which Python takes them (cffi can pass no Python object to C):
 *
 *   context(X, Y, w, syrk, local) -> capsule
 *       X (N x din), Y (N x ydim) and w (N, or None): C-contiguous float64 data, held
 *       (their buffers) until the capsule is freed; syrk and local: the addresses of
 *       BLAS dsyrk and of the per-thread BLAS threads setter (0 where unavailable).
 *   run(context, kind, p, ntasks, blas, gbytes) -> (loss, grad, H), None or a status
 *       sf_run on all N samples in ntasks ranges: kind 0 the loss (grad and H None), 1
 *       also the gradient, 2 also the Hessian, 3 the Hessian alone (loss and grad
 *       None); blas 0 without dsyrk, 1 with dsyrk and single-threaded BLAS calls, 2 with
 *       dsyrk and the BLAS's own threads; gbytes as in sf_run.  None when p is not a
 *       numpy.ndarray (exactly) of P native float64 values, C-contiguous (nothing is
 *       computed: the caller converts or rejects p); sf_run's status (an int) when it
 *       failed.  The GIL is released around sf_run from SF_PY_GIL_WORK samples times
 *       parameters on: below, the kernel takes a few microseconds and the release
 *       itself ~0.07 us. */
#if defined(Py_PYTHON_H) && !defined(Py_LIMITED_API)
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#define SF_PY_GIL_WORK 4096L
#define SF_PY_CAPSULE "symflow.sf_py_context"

typedef struct {
    Py_buffer X, Y, w;              /* held views of the data (w.obj NULL: no weights) */
    long N;
    sf_syrk_fn syrk;
    sf_threads_fn local;
} sf_py_context;

static void sf_py_context_free(PyObject *capsule)
{
    sf_py_context *c = (sf_py_context *)PyCapsule_GetPointer(capsule, SF_PY_CAPSULE);
    if (!c) return;
    if (c->X.obj) PyBuffer_Release(&c->X);
    if (c->Y.obj) PyBuffer_Release(&c->Y);
    if (c->w.obj) PyBuffer_Release(&c->w);
    PyMem_Free(c);
}

/* A read-only C-contiguous view of `obj` as n native doubles, or -1 with an exception. */
static int sf_py_doubles(PyObject *obj, Py_ssize_t n, const char *what, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != sizeof(double) || !view->format || strcmp(view->format, "d") != 0
        || view->len != n * (Py_ssize_t)sizeof(double)) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous float64 array of %zd entries",
                     what, n);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

static PyObject *sf_py_context_new(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "context(X, Y, w, syrk, local)");
        return NULL;
    }
    sf_py_context *c = (sf_py_context *)PyMem_Calloc(1, sizeof *c);
    if (!c) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(c, SF_PY_CAPSULE, sf_py_context_free);
    if (!capsule) {
        PyMem_Free(c);
        return NULL;
    }
    Py_buffer probe;   /* N from X's size */
    if (PyObject_GetBuffer(args[0], &probe, PyBUF_C_CONTIGUOUS) < 0) goto fail;
    c->N = (long)(probe.len / (Py_ssize_t)(sizeof(double) * SF_DIN));
    PyBuffer_Release(&probe);
    if (sf_py_doubles(args[0], (Py_ssize_t)c->N * SF_DIN, "X", &c->X) < 0
        || sf_py_doubles(args[1], (Py_ssize_t)c->N * SF_YDIM, "Y", &c->Y) < 0
        || (args[2] != Py_None && sf_py_doubles(args[2], c->N, "w", &c->w) < 0))
        goto fail;
    const unsigned long long syrk = PyLong_AsUnsignedLongLong(args[3]);
    const unsigned long long local = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred()) goto fail;
    c->syrk = (sf_syrk_fn)(uintptr_t)syrk;
    c->local = (sf_threads_fn)(uintptr_t)local;
    return capsule;
fail:
    Py_DECREF(capsule);
    return NULL;
}

static PyObject *sf_py_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "run(context, kind, p, ntasks, blas, gbytes)");
        return NULL;
    }
    sf_py_context *c = (sf_py_context *)PyCapsule_GetPointer(args[0], SF_PY_CAPSULE);
    if (!c) return NULL;
    const long kind = PyLong_AsLong(args[1]), ntasks = PyLong_AsLong(args[3]);
    const long blas = PyLong_AsLong(args[4]), gbytes = PyLong_AsLong(args[5]);
    if (PyErr_Occurred()) return NULL;
    if (kind < 0 || kind > 3 || ntasks < 1 || ntasks > INT_MAX || blas < 0 || blas > 2 || gbytes < 0) {
        PyErr_SetString(PyExc_ValueError, "run: kind, ntasks, blas or gbytes out of range");
        return NULL;
    }
    PyObject *p = args[2];
    if (Py_TYPE(p) != &PyArray_Type) Py_RETURN_NONE;
    PyArrayObject *pa = (PyArrayObject *)p;
    if (PyArray_TYPE(pa) != NPY_DOUBLE || !PyArray_ISNOTSWAPPED(pa) || PyArray_NDIM(pa) != 1
        || PyArray_DIM(pa, 0) != SF_P || !PyArray_IS_C_CONTIGUOUS(pa))
        Py_RETURN_NONE;
    npy_intp dims[2] = {SF_P, SF_P};
    PyObject *grad = NULL, *hess = NULL;
    if ((kind == 1 || kind == 2) && !(grad = PyArray_SimpleNew(1, dims, NPY_DOUBLE))) return NULL;
    if (kind >= 2 && !(hess = PyArray_SimpleNew(2, dims, NPY_DOUBLE))) {
        Py_XDECREF(grad);
        return NULL;
    }
    double loss = 0.0;
    const long N = c->N;
    const int release = (double)N * SF_P >= (double)SF_PY_GIL_WORK;
    PyThreadState *ts = release ? PyEval_SaveThread() : NULL;
    const int status = sf_run(kind < 3 ? (int)kind : 2, (const double *)PyArray_DATA(pa),
                              (const double *)c->X.buf, (const double *)c->Y.buf,
                              c->w.obj ? (const double *)c->w.buf : NULL, N, 0, N, (int)ntasks,
                              kind < 3 ? &loss : NULL,
                              grad ? (double *)PyArray_DATA((PyArrayObject *)grad) : NULL,
                              hess ? (double *)PyArray_DATA((PyArrayObject *)hess) : NULL,
                              blas ? c->syrk : NULL, gbytes,
                              blas == 1 ? c->local : NULL);
    if (release) PyEval_RestoreThread(ts);
    if (status) {
        Py_XDECREF(grad);
        Py_XDECREF(hess);
        return PyLong_FromLong(status);
    }
    PyObject *value = kind < 3 ? PyFloat_FromDouble(loss) : Py_NewRef(Py_None);
    PyObject *out = value ? PyTuple_New(3) : NULL;
    if (!out) {
        Py_XDECREF(value);
        Py_XDECREF(grad);
        Py_XDECREF(hess);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, value);
    PyTuple_SET_ITEM(out, 1, grad ? grad : Py_NewRef(Py_None));
    PyTuple_SET_ITEM(out, 2, hess ? hess : Py_NewRef(Py_None));
    return out;
}

static PyMethodDef sf_py_methods[] = {
    {"context", (PyCFunction)(void (*)(void))sf_py_context_new, METH_FASTCALL,
     "context(X, Y, w, syrk, local): the data of a Net for run()"},
    {"run", (PyCFunction)(void (*)(void))sf_py_run, METH_FASTCALL,
     "run(context, kind, p, ntasks, blas, gbytes) -> (loss, grad, H), None or a status"},
    {NULL, NULL, 0, NULL}
};

/* Called through cffi, which has released the GIL.  Returns 0, or -1 (exception cleared):
 * also when NumPy's C API does not load (e.g. NumPy changed since the build). */
int sf_py_install(const char *name)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *module = _import_array() < 0 ? NULL : PyImport_AddModule(name);   /* borrowed */
    const int rc = module && PyModule_AddFunctions(module, sf_py_methods) == 0 ? 0 : -1;
    if (rc) PyErr_Clear();
    PyGILState_Release(gil);
    return rc;
}
#else
int sf_py_install(const char *name)
{
    (void)name;
    return -1;   /* no full C API (the limited one, or compiled outside Python) */
}
#endif

/* Exact Beta draws for Thompson sampling, compiled.
 *
 * Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b) (independent). Gamma uses
 * Marsaglia & Tsang (2000) with its squeeze; shapes below 1 use the boost
 * Gamma(a) = Gamma(a + 1) * U^(1/a), carried in log space so that two tiny shapes cannot give 0/0.
 * Normals come from a 256-layer ziggurat (Marsaglia & Tsang 2000, with exact tail and wedge tests),
 * uniforms from xoshiro256++ seeded through splitmix64. Every draw is exact (rejection sampling);
 * nothing is approximated. No NumPy headers: arrays arrive through the buffer protocol.
 *
 * Module: shared._fastbeta
 *   FastBeta(seed: int)
 *     .fill(alpha, beta, out)   out[i] ~ Beta(alpha[i], beta[i]); all float64, C-contiguous, same length
 *     .argmax(alpha, beta)      index of the largest of one draw per arm (one Thompson decision)
 *     .argmax_into(alpha, beta, out)   len(out) independent decisions into an int64 vector
 *     .random()                 one uniform in [0, 1) (for tests)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- RNG */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

typedef struct {
    uint64_t s[4];
} rng_t;

static inline uint64_t next_u64(rng_t *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static inline double next_double(rng_t *r) {   /* [0, 1) */
    return (double)(next_u64(r) >> 11) * 0x1.0p-53;
}

static inline double next_double_open(rng_t *r) {   /* (0, 1) */
    return ((double)(next_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------- ziggurat normal */

#define ZN 256
static const double ZR = 3.6541528853610088;      /* start of the tail */
static const double ZV = 4.92867323399e-3;        /* area of each layer */
static double zx[ZN + 1];                          /* layer right edges, zx[0] = V / f(R) */
static double zf[ZN + 1];                          /* f(zx[i]) = exp(-zx[i]^2 / 2) */

static void zig_init(void) {
    double f = exp(-0.5 * ZR * ZR);
    zx[0] = ZV / f;
    zx[1] = ZR;
    zf[0] = 0.0;   /* unused for the base layer's wedge */
    zf[1] = f;
    for (int i = 2; i < ZN; i++) {
        zx[i] = sqrt(-2.0 * log(ZV / zx[i - 1] + f));
        f = exp(-0.5 * zx[i] * zx[i]);
        zf[i] = f;
    }
    zx[ZN] = 0.0;
    zf[ZN] = 1.0;
}

static inline double next_normal(rng_t *r) {
    for (;;) {
        const uint64_t u = next_u64(r);
        const int i = (int)(u & 0xFF);
        const int sign = (int)((u >> 8) & 1);
        const double x = (double)(u >> 11) * 0x1.0p-53 * zx[i];   /* uniform on [0, zx[i]) */
        if (x < zx[i + 1]) {
            return sign ? -x : x;                                 /* inside the layer's core */
        }
        if (i == 0) {                                            /* base layer beyond R: the tail */
            double xt, yt;
            do {
                xt = -log(next_double_open(r)) / ZR;
                yt = -log(next_double_open(r));
            } while (yt + yt < xt * xt);
            return sign ? -(ZR + xt) : (ZR + xt);
        }
        /* wedge between f(zx[i]) and f(zx[i + 1]) */
        if (zf[i] + next_double(r) * (zf[i + 1] - zf[i]) < exp(-0.5 * x * x)) {
            return sign ? -x : x;
        }
    }
}

/* ---------------------------------------------------------------- gamma and beta */

/* Gamma(a) for a >= 1 (Marsaglia & Tsang), d = a - 1/3, c = 1 / sqrt(9 d). */
static inline double gamma_mt(rng_t *r, double d, double c) {
    for (;;) {
        double x, v;
        do {
            x = next_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = next_double_open(r);
        const double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
        if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v))) return d * v;
    }
}

/* log Gamma(a) draw for any a > 0. */
static inline double log_gamma_draw(rng_t *r, double a) {
    if (a >= 1.0) {
        const double d = a - 1.0 / 3.0;
        return log(gamma_mt(r, d, 1.0 / sqrt(9.0 * d)));
    }
    const double d = a + 1.0 - 1.0 / 3.0;
    return log(gamma_mt(r, d, 1.0 / sqrt(9.0 * d))) + log(next_double_open(r)) / a;
}

static inline double beta_draw(rng_t *r, double a, double b) {
    if (a >= 1.0 && b >= 1.0) {
        const double da = a - 1.0 / 3.0, db = b - 1.0 / 3.0;
        const double x = gamma_mt(r, da, 1.0 / sqrt(9.0 * da));
        const double y = gamma_mt(r, db, 1.0 / sqrt(9.0 * db));
        return x / (x + y);
    }
    const double lx = log_gamma_draw(r, a);
    const double ly = log_gamma_draw(r, b);
    return 1.0 / (1.0 + exp(ly - lx));
}

/* ---------------------------------------------------------------- Python type */

typedef struct {
    PyObject_HEAD
    rng_t rng;
} FastBeta;

static int FastBeta_init(FastBeta *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"seed", NULL};
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "K", kwlist, &seed)) return -1;
    uint64_t x = (uint64_t)seed;
    for (int i = 0; i < 4; i++) self->rng.s[i] = splitmix64(&x);
    return 0;
}

/* A read-only or writable float64 vector from the buffer protocol. */
static int get_vec(PyObject *obj, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->ndim != 1 || view->itemsize != 8 || view->format == NULL || strcmp(view->format, "d") != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a 1-d C-contiguous float64 array", name);
        return -1;
    }
    return 0;
}

/* alpha and beta (args[0], args[1]): float64 vectors of one length, every value > 0. Returns the
 * length, or -1 with an exception set and both buffers released. */
static Py_ssize_t get_params(PyObject *const *args, Py_buffer *va, Py_buffer *vb) {
    if (get_vec(args[0], va, 0, "alpha") < 0) return -1;
    if (get_vec(args[1], vb, 0, "beta") < 0) { PyBuffer_Release(va); return -1; }
    const Py_ssize_t n = va->shape[0];
    if (vb->shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "alpha and beta must have the same length");
        goto fail;
    }
    const double *a = (const double *)va->buf, *b = (const double *)vb->buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(a[i] > 0.0) || !(b[i] > 0.0)) {
            PyErr_Format(PyExc_ValueError, "alpha and beta must be > 0 (index %zd)", i);
            goto fail;
        }
    }
    return n;
fail:
    PyBuffer_Release(va);
    PyBuffer_Release(vb);
    return -1;
}

/* Index of the largest of one Beta draw per arm. */
static inline Py_ssize_t draw_argmax(rng_t *r, const double *a, const double *b, Py_ssize_t n) {
    Py_ssize_t best = 0;
    double best_v = -1.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double v = beta_draw(r, a[i], b[i]);
        if (v > best_v) { best_v = v; best = i; }
    }
    return best;
}

static PyObject *FastBeta_fill(FastBeta *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fill(alpha, beta, out) takes 3 arguments");
        return NULL;
    }
    Py_buffer va, vb, vo;
    const Py_ssize_t n = get_params(args, &va, &vb);
    if (n < 0) return NULL;
    if (get_vec(args[2], &vo, 1, "out") < 0) { PyBuffer_Release(&va); PyBuffer_Release(&vb); return NULL; }
    PyObject *res = NULL;
    if (vo.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "alpha, beta and out must have the same length");
        goto done;
    }
    const double *a = (const double *)va.buf, *b = (const double *)vb.buf;
    double *o = (double *)vo.buf;
    for (Py_ssize_t i = 0; i < n; i++) o[i] = beta_draw(&self->rng, a[i], b[i]);
    res = Py_None;
    Py_INCREF(res);
done:
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    return res;
}

static PyObject *FastBeta_argmax(FastBeta *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "argmax(alpha, beta) takes 2 arguments");
        return NULL;
    }
    Py_buffer va, vb;
    const Py_ssize_t n = get_params(args, &va, &vb);
    if (n < 0) return NULL;
    PyObject *res = NULL;
    if (n == 0) PyErr_SetString(PyExc_ValueError, "alpha and beta must have a non-zero length");
    else res = PyLong_FromSsize_t(draw_argmax(&self->rng, (const double *)va.buf, (const double *)vb.buf, n));
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return res;
}

static PyObject *FastBeta_argmax_into(FastBeta *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "argmax_into(alpha, beta, out) takes 3 arguments");
        return NULL;
    }
    Py_buffer va, vb, vo;
    const Py_ssize_t n = get_params(args, &va, &vb);
    if (n < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &vo, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&va); PyBuffer_Release(&vb); return NULL;
    }
    PyObject *res = NULL;
    if (vo.ndim != 1 || vo.itemsize != 8 || vo.format == NULL ||
        (strcmp(vo.format, "l") != 0 && strcmp(vo.format, "q") != 0)) {
        PyErr_SetString(PyExc_TypeError, "out must be a 1-d C-contiguous int64 array");
        goto done;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "alpha and beta must have a non-zero length");
        goto done;
    }
    int64_t *o = (int64_t *)vo.buf;
    for (Py_ssize_t j = 0; j < vo.shape[0]; j++) {
        o[j] = (int64_t)draw_argmax(&self->rng, (const double *)va.buf, (const double *)vb.buf, n);
    }
    res = Py_None;
    Py_INCREF(res);
done:
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    return res;
}

static PyObject *FastBeta_random(FastBeta *self, PyObject *Py_UNUSED(ignored)) {
    return PyFloat_FromDouble(next_double(&self->rng));
}

static PyObject *FastBeta_normal(FastBeta *self, PyObject *Py_UNUSED(ignored)) {
    return PyFloat_FromDouble(next_normal(&self->rng));
}

static PyMethodDef FastBeta_methods[] = {
    {"fill", (PyCFunction)(void (*)(void))FastBeta_fill, METH_FASTCALL,
     "fill(alpha, beta, out): out[i] ~ Beta(alpha[i], beta[i])"},
    {"argmax", (PyCFunction)(void (*)(void))FastBeta_argmax, METH_FASTCALL,
     "argmax(alpha, beta) -> index of the largest Beta draw"},
    {"argmax_into", (PyCFunction)(void (*)(void))FastBeta_argmax_into, METH_FASTCALL,
     "argmax_into(alpha, beta, out): len(out) independent decisions"},
    {"random", (PyCFunction)FastBeta_random, METH_NOARGS, "one uniform draw in [0, 1)"},
    {"normal", (PyCFunction)FastBeta_normal, METH_NOARGS, "one standard normal draw (ziggurat)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastBetaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shared._fastbeta.FastBeta",
    .tp_basicsize = sizeof(FastBeta),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Exact Beta sampler (xoshiro256++, ziggurat normals, Marsaglia-Tsang gamma)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastBeta_init,
    .tp_methods = FastBeta_methods,
};

static struct PyModuleDef fastbeta_module = {
    PyModuleDef_HEAD_INIT, "_fastbeta", "Exact compiled Beta draws for Thompson sampling", -1, NULL,
};

PyMODINIT_FUNC PyInit__fastbeta(void) {
    zig_init();
    if (PyType_Ready(&FastBetaType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fastbeta_module);
    if (m == NULL) return NULL;
    Py_INCREF(&FastBetaType);
    if (PyModule_AddObject(m, "FastBeta", (PyObject *)&FastBetaType) < 0) {
        Py_DECREF(&FastBetaType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

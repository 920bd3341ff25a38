/* Item id -> bundle row for a list of candidate ids, in one C loop.
 *
 * The table is open addressing with linear probing over the ids' own str hashes (built by
 * edge.item_index at load): slot = hash & mask, EMPTY marks a free slot. A lookup touches the
 * request's str (its cached hash, computed once per string by CPython) and the two int64 tables;
 * stored key objects are never dereferenced. No NumPy headers: the tables arrive through the buffer
 * protocol.
 *
 * lookup(ids: list[str], hashes: int64[m], rows: int64[m], out: int64[n]) -> number of unknown ids
 * (out[i] = -1 for those). m is a power of two; EMPTY is INT64_MIN.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get_i64(PyObject *obj, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->ndim != 1 || view->itemsize != 8 || view->format == NULL ||
        (strcmp(view->format, "l") != 0 && strcmp(view->format, "q") != 0)) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a 1-d C-contiguous int64 array", name);
        return -1;
    }
    return 0;
}

static PyObject *lookup(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "lookup(ids, hashes, rows, out) takes 4 arguments");
        return NULL;
    }
    PyObject *ids = args[0];
    if (!PyList_Check(ids)) {
        PyErr_SetString(PyExc_TypeError, "ids must be a list of str");
        return NULL;
    }
    Py_buffer vh, vr, vo;
    if (get_i64(args[1], &vh, 0, "hashes") < 0) return NULL;
    if (get_i64(args[2], &vr, 0, "rows") < 0) { PyBuffer_Release(&vh); return NULL; }
    if (get_i64(args[3], &vo, 1, "out") < 0) { PyBuffer_Release(&vh); PyBuffer_Release(&vr); return NULL; }
    PyObject *res = NULL;
    const Py_ssize_t m = vh.shape[0];
    const Py_ssize_t n = PyList_GET_SIZE(ids);
    if (vr.shape[0] != m || m == 0 || (m & (m - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "hashes and rows must have the same power-of-two length");
        goto done;
    }
    if (vo.shape[0] < n) {
        PyErr_SetString(PyExc_ValueError, "out is shorter than ids");
        goto done;
    }
    const int64_t *th = (const int64_t *)vh.buf, *tr = (const int64_t *)vr.buf;
    int64_t *o = (int64_t *)vo.buf;
    const uint64_t mask = (uint64_t)(m - 1);
    Py_ssize_t unknown = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(ids, i);
        if (!PyUnicode_Check(s)) {
            PyErr_Format(PyExc_TypeError, "ids[%zd] is not a str", i);
            goto done;
        }
        const Py_hash_t h = PyObject_Hash(s);
        if (h == -1) goto done;
        uint64_t slot = (uint64_t)h & mask;
        int64_t row = -1;
        for (Py_ssize_t probe = 0; probe < m; probe++) {
            const int64_t t = th[slot];
            if (t == (int64_t)h) { row = tr[slot]; break; }
            if (t == INT64_MIN) break;
            slot = (slot + 1) & mask;
        }
        o[i] = row;
        unknown += row < 0;
    }
    res = PyLong_FromSsize_t(unknown);
done:
    PyBuffer_Release(&vh);
    PyBuffer_Release(&vr);
    PyBuffer_Release(&vo);
    return res;
}

static PyMethodDef methods[] = {
    {"lookup", (PyCFunction)(void (*)(void))lookup, METH_FASTCALL,
     "lookup(ids, hashes, rows, out) -> number of unknown ids"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rowmap_module = {
    PyModuleDef_HEAD_INIT, "_rowmap", "Item id -> row lookup (every tier that ranks a bundle)", -1, methods,
};

PyMODINIT_FUNC PyInit__rowmap(void) { return PyModule_Create(&rowmap_module); }

/* The selection walk of the ranking kernel in one C loop (the NumPy/Python walk it replaces gives the same
 * answers: shared.ranking.guardrails.DiversitySelector._select_whole).
 *
 * walk(order: int64[n], cats: int64[m], explored: bool[m] | None, k, budget, cap) -> (picked, flags)
 *
 * Walks ``order`` (candidate positions, best draw first) and takes a position when its category (cats[pos],
 * -1: no category, never capped) holds fewer than ``cap`` taken items and, if it is explored, fewer than
 * ``budget`` explored items were taken. When that ends short of k after skipping explored items, a second
 * walk takes skipped items that keep the cap, flagged not explored. Returns two lists: the positions taken
 * and their explored flags. No NumPy headers: the arrays arrive through the buffer protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get_buf(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->ndim != 1 || view->itemsize != itemsize) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a 1-d C-contiguous array of %zd-byte items", name, itemsize);
        return -1;
    }
    return 0;
}

static PyObject *walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk(order, cats, explored, k, budget, cap) takes 6 arguments");
        return NULL;
    }
    const Py_ssize_t k = PyLong_AsSsize_t(args[3]);
    const Py_ssize_t budget = PyLong_AsSsize_t(args[4]);
    const Py_ssize_t cap = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer vo, vc, ve;
    int has_exp = args[2] != Py_None;
    if (get_buf(args[0], &vo, 8, "order") < 0) return NULL;
    if (get_buf(args[1], &vc, 8, "cats") < 0) { PyBuffer_Release(&vo); return NULL; }
    if (has_exp && get_buf(args[2], &ve, 1, "explored") < 0) {
        PyBuffer_Release(&vo); PyBuffer_Release(&vc); return NULL;
    }
    PyObject *res = NULL, *picked = NULL, *flags = NULL;
    int32_t *counts = NULL;
    unsigned char *taken = NULL;
    const int64_t *order = (const int64_t *)vo.buf, *cats = (const int64_t *)vc.buf;
    const unsigned char *exp = has_exp ? (const unsigned char *)ve.buf : NULL;
    const Py_ssize_t n = vo.shape[0], m = vc.shape[0];
    if (has_exp && ve.shape[0] != m) {
        PyErr_SetString(PyExc_ValueError, "explored and cats differ in length");
        goto done;
    }
    int64_t max_cat = -1;
    for (Py_ssize_t i = 0; i < m; i++) if (cats[i] > max_cat) max_cat = cats[i];
    counts = PyMem_Calloc((size_t)(max_cat + 2), sizeof(int32_t));
    taken = PyMem_Calloc((size_t)(m + 1), 1);
    picked = PyList_New(0);
    flags = PyList_New(0);
    if (counts == NULL || taken == NULL || picked == NULL || flags == NULL) { PyErr_NoMemory(); goto done; }
    Py_ssize_t got = 0, used = 0;
    int skipped_for_budget = 0;
    for (int pass = 0; pass < 2 && got < k; pass++) {
        if (pass == 1 && !skipped_for_budget) break;
        for (Py_ssize_t i = 0; i < n && got < k; i++) {
            const int64_t pos = order[i];
            if (pos < 0 || pos >= m) { PyErr_SetString(PyExc_IndexError, "order holds a position out of range"); goto done; }
            if (taken[pos]) continue;
            const int e = pass == 0 && exp != NULL && exp[pos];
            if (e && used >= budget) { skipped_for_budget = 1; continue; }
            const int64_t c = cats[pos];
            if (c >= 0) {
                if (counts[c] >= cap) continue;
                counts[c]++;
            }
            taken[pos] = 1;
            PyObject *p = PyLong_FromLongLong(pos);
            if (p == NULL || PyList_Append(picked, p) < 0) { Py_XDECREF(p); goto done; }
            Py_DECREF(p);
            if (PyList_Append(flags, e ? Py_True : Py_False) < 0) goto done;
            used += e;
            got++;
        }
    }
    res = PyTuple_Pack(2, picked, flags);
done:
    Py_XDECREF(picked);
    Py_XDECREF(flags);
    PyMem_Free(counts);
    PyMem_Free(taken);
    PyBuffer_Release(&vo);
    PyBuffer_Release(&vc);
    if (has_exp) PyBuffer_Release(&ve);
    return res;
}

static PyMethodDef methods[] = {
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL,
     "walk(order, cats, explored, k, budget, cap) -> (positions, explored flags)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef walk_module = {
    PyModuleDef_HEAD_INIT, "_walk", "The ranking kernel's selection walk (exploration budget + diversity cap)", -1,
    methods,
};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&walk_module); }

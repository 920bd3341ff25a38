/* strata.streaming._jsonspans: where the elements of a JSON array start and end, without decoding them.

   spans(buf, pos, max_items, want=1) -> (list[tuple[int, int]] | int | None, int, int)
   ``buf[pos]`` must be '['. Returns the (start, end) byte offsets of each top-level element (whitespace
   trimmed; with ``want=0`` only their count), the offset just past the closing ']' and the largest element's
   length. Once more than ``max_items`` elements were seen it stops and returns (None, count, 0): the caller
   refuses the body without having decoded or scanned the rest.
   Only the structure is checked (strings, nesting); each element is decoded (and fully validated) later.
   Raises ValueError when the structure is broken (unterminated string, unbalanced brackets). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static PyObject *spans(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_items, longest = 0;
    int want = 1;
    if (!PyArg_ParseTuple(args, "y*nn|p", &view, &pos, &max_items, &want)) return NULL;
    const unsigned char *b = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len, i = pos, count = 0;
    PyObject *out = NULL;
    if (pos < 0 || pos >= n || b[pos] != '[') {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "expected '['");
        return NULL;
    }
    if (want) {
        out = PyList_New(0);
        if (out == NULL) goto fail;
    }
    i++;
    while (i < n && is_ws(b[i])) i++;
    if (i < n && b[i] == ']') { i++; goto done; }
    for (;;) {
        while (i < n && is_ws(b[i])) i++;
        Py_ssize_t start = i, depth = 0;
        for (;;) {
            if (i >= n) { PyErr_SetString(PyExc_ValueError, "unterminated array"); goto fail; }
            unsigned char c = b[i];
            if (c == '"') {
                i++;
                while (i < n && b[i] != '"') i += (b[i] == '\\') ? 2 : 1;
                if (i >= n) { PyErr_SetString(PyExc_ValueError, "unterminated string"); goto fail; }
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (depth == 0) break;
                depth--;
            } else if (c == ',' && depth == 0) {
                break;
            }
            i++;
        }
        Py_ssize_t end = i;
        while (end > start && is_ws(b[end - 1])) end--;
        if (end == start) { PyErr_SetString(PyExc_ValueError, "empty array element"); goto fail; }
        if (++count > max_items) {
            Py_XDECREF(out);
            PyBuffer_Release(&view);
            return Py_BuildValue("(Onn)", Py_None, count, (Py_ssize_t)0);
        }
        if (end - start > longest) longest = end - start;
        if (want) {
            PyObject *t = Py_BuildValue("(nn)", start, end);
            if (t == NULL || PyList_Append(out, t) < 0) { Py_XDECREF(t); goto fail; }
            Py_DECREF(t);
        }
        if (b[i] == ']') { i++; break; }
        if (b[i] != ',') { PyErr_SetString(PyExc_ValueError, "unbalanced brackets"); goto fail; }
        i++;
    }
done:
    PyBuffer_Release(&view);
    if (!want) return Py_BuildValue("(nnn)", count, i, longest);
    {
        PyObject *r = Py_BuildValue("(Onn)", out, i, longest);
        Py_DECREF(out);
        return r;
    }
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"spans", spans, METH_VARARGS, "Element offsets of the JSON array at pos (None past max_items)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jsonspans", NULL, -1, methods};

PyMODINIT_FUNC PyInit__jsonspans(void) { return PyModule_Create(&module); }

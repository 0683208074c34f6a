/* module_util.c - small helpers the binding files share (declared in module.h). */
#include "module.h"

PyObject *vmp_module_text(const char *s, size_t len)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
}

PyObject *vmp_module_list_of(size_t n, PyObject *(*item)(const void *ctx, size_t i),
                             const void *ctx)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = item(ctx, i);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

int vmp_module_dict_set_new(PyObject *d, PyObject *k, PyObject *v)
{
    int rc = k && v ? PyDict_SetItem(d, k, v) : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return rc;
}

/*
 * module_export.c - Python bindings for the exporters (vmp_export.h).
 *
 *   _core.export(source, format, output, thread=None, lines=False,
 *                no_native=False, title=None, html_min_fraction=0.0)
 *       writes the profile `source` (a read Profile or Stats, or a path to
 *       read) in `format` to `output` (a path, or an int file descriptor left
 *       open); thread is a thread id
 *   _core.export_formats() -> tuple of format names
 * Profile.export (module_reader.c) is the same with the query layer's
 * options.  Reading and writing run without the GIL.  Failures raise
 * VMProfError with the C library's one-line message.
 */
#include "module.h"

#include <limits.h>

#include "vmp_export.h"
#include "vmp_format.h"

static int parse_thread(PyObject *thread, vmp_export_options *o)
{
    if (thread == NULL || thread == Py_None)
        return 0;
    o->thread_id = PyLong_AsUnsignedLongLongMask(thread);
    if (PyErr_Occurred())
        return -1;
    o->has_thread = 1;
    return 0;
}

static vmp_profile *read_source(PyObject *source_bytes)
{
    vmp_error err;
    vmp_profile *p;
    const char *path = PyBytes_AS_STRING(source_bytes);
    vmp_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    p = vmp_profile_read_file(path, NULL, &err);
    Py_END_ALLOW_THREADS
    if (!p)
        PyErr_Format(vmp_module_error, "%s: %s", path, err.message);
    return p;
}

static PyObject *py_export(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"source", "format", "output", "thread", "lines", "no_native",
                             "title", "html_min_fraction", NULL};
    PyObject *source = NULL, *output, *thread = Py_None, *out_path = NULL, *result = NULL;
    PyObject *holder = NULL; /* the Profile object behind `given`, kept alive meanwhile */
    const char *format_name, *title = NULL;
    int lines = 0, no_native = 0, format, fd = -1, rc;
    double min_fraction = 0.0;
    vmp_export_options o;
    vmp_profile *p;
    vmp_error err;
    (void)self;
    memset(&o, 0, sizeof o);
    PyObject *source_obj;
    vmp_profile *given = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OsO|Oppzd:export", kwlist, &source_obj,
                                     &format_name, &output, &thread, &lines, &no_native, &title,
                                     &min_fraction))
        return NULL;
    if (PyUnicode_Check(source_obj) || PyBytes_Check(source_obj) ||
        PyObject_HasAttrString(source_obj, "__fspath__")) {
        if (!PyUnicode_FSConverter(source_obj, &source))
            return NULL;
    } else if (!(given = vmp_module_profile_of(source_obj, &holder))) {
        return NULL;
    }
    format = vmp_export_format_from_name(format_name);
    if (format < 0) {
        PyErr_Format(vmp_module_error, "unknown export format '%s'; choose one of: %s",
                     format_name, vmp_export_format_list());
        goto out;
    }
    if (PyLong_Check(output)) {
        long lfd = PyLong_AsLong(output);
        fd = lfd > INT_MAX ? -1 : (int)lfd;
        if (fd < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "output file descriptor must be >= 0");
        if (PyErr_Occurred())
            goto out;
    } else if (!PyUnicode_FSConverter(output, &out_path)) {
        goto out;
    }
    if (parse_thread(thread, &o) < 0)
        goto out;
    o.lines = lines;
    o.no_native = no_native;
    o.title = title;
    o.html_min_fraction = min_fraction;
    if (!(p = given ? given : read_source(source)))
        goto out;
    vmp_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    if (fd >= 0)
        rc = vmp_export_write_fd(p, (vmp_export_format)format, fd, &o, &err);
    else
        rc = vmp_export_write_path(p, (vmp_export_format)format, PyBytes_AS_STRING(out_path), &o,
                                   &err);
    if (!given)
        vmp_profile_free(p);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_SetString(vmp_module_error, err.message);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
out:
    Py_XDECREF(holder);
    Py_XDECREF(source);
    Py_XDECREF(out_path);
    return result;
}

static PyObject *py_export_formats(PyObject *self, PyObject *unused)
{
    PyObject *t = PyTuple_New(VMP_EXPORT_FORMAT_COUNT);
    int i;
    (void)self;
    (void)unused;
    if (!t)
        return NULL;
    for (i = 0; i < VMP_EXPORT_FORMAT_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(vmp_export_format_name((vmp_export_format)i));
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

static PyMethodDef export_methods[] = {
    {"export", (PyCFunction)(void (*)(void))py_export, METH_VARARGS | METH_KEYWORDS,
     "export(source, format, output, thread=None, lines=False, no_native=False, title=None, "
     "html_min_fraction=0.0)\n--\n\nWrite the profile file `source` in `format` to `output` "
     "(a path or a file descriptor)."},
    {"export_formats", py_export_formats, METH_NOARGS,
     "export_formats()\n--\n\nThe names of the export formats."},
    {NULL, NULL, 0, NULL},
};

int vmp_module_init_export(PyObject *module)
{
    return PyModule_AddFunctions(module, export_methods);
}

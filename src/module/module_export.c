/*
 * module_export.c - Python bindings for the exporters (vmp_export.h) and the
 * data behind vmprofshow's text views.
 *
 *   _core.export(source, format, output, thread=None, lines=False,
 *                no_native=False, title=None, html_min_fraction=0.0)
 *       reads the profile file `source` and writes `format` to `output`
 *       (a path, or an int file descriptor left open)
 *   _core.export_formats() -> tuple of format names
 *   _core.view_data(source, thread=None, lines=False, no_native=False)
 *       -> dict: the export view as Python data (summary, threads, funcs,
 *          frames, distinct stacks with counts, and for memory profiles the
 *          RSS growth per stack and a reduced RSS series); vmprof.show builds
 *          its text views from it
 * Reading and writing run without the GIL.  Failures raise VMProfError with
 * the C library's one-line message.
 */
#include "module.h"

#include <limits.h>

#include "vmp_export.h"
#include "vmp_format.h"

#define RSS_SERIES_POINTS 400

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
    const char *format_name, *title = NULL;
    int lines = 0, no_native = 0, format, fd = -1, rc;
    double min_fraction = 0.0;
    vmp_export_options o;
    vmp_profile *p;
    vmp_error err;
    (void)self;
    memset(&o, 0, sizeof o);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&sO|Oppzd:export", kwlist,
                                     PyUnicode_FSConverter, &source, &format_name, &output,
                                     &thread, &lines, &no_native, &title, &min_fraction))
        return NULL;
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
    if (!(p = read_source(source)))
        goto out;
    vmp_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    if (fd >= 0)
        rc = vmp_export_write_fd(p, (vmp_export_format)format, fd, &o, &err);
    else
        rc = vmp_export_write_path(p, (vmp_export_format)format, PyBytes_AS_STRING(out_path), &o,
                                   &err);
    vmp_profile_free(p);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_SetString(vmp_module_error, err.message);
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
out:
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

/* Sets d[key] = value and drops the reference to value; -1 on failure. */
static int put(PyObject *d, const char *key, PyObject *value)
{
    int rc;
    if (!value)
        return -1;
    rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *summary_dict(const vmp_profile *p, const vmp_xview *v)
{
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    PyObject *d = PyDict_New(), *meta;
    size_t i;
    if (!d)
        return NULL;
    if (put(d, "version", PyLong_FromLong(s->version)) < 0 ||
        put(d, "interp", PyUnicode_FromString(s->interp)) < 0 ||
        put(d, "mode", PyLong_FromUnsignedLong(s->mode)) < 0 ||
        put(d, "lines", PyBool_FromLong(s->mode & VMP_MODE_LINES)) < 0 ||
        put(d, "memory", PyBool_FromLong(s->mode & VMP_MODE_MEMORY)) < 0 ||
        put(d, "native", PyBool_FromLong(s->mode & VMP_MODE_NATIVE)) < 0 ||
        put(d, "real_time", PyBool_FromLong(s->mode & VMP_MODE_REAL_TIME)) < 0 ||
        put(d, "period_usec", PyLong_FromUnsignedLongLong(s->period_usec)) < 0 ||
        put(d, "samples", PyLong_FromUnsignedLongLong(s->n_samples)) < 0 ||
        put(d, "selected_samples", PyLong_FromUnsignedLongLong(v->n_samples)) < 0 ||
        put(d, "max_rss_kib", PyLong_FromUnsignedLongLong(s->max_rss_kib)) < 0 ||
        put(d, "complete", PyBool_FromLong(s->complete)) < 0 ||
        put(d, "truncated_at", PyLong_FromLongLong(s->truncated_at)) < 0 ||
        put(d, "duration_ms",
            PyFloat_FromDouble(s->n_samples ? vmp_xview_sample_ms(v, s->n_samples) : 0.0)) < 0 ||
        put(d, "start_time",
            s->has_start_time ? PyFloat_FromDouble((double)s->start_sec + s->start_usec / 1e6)
                              : (Py_INCREF(Py_None), Py_None)) < 0)
        goto fail;
    if (put(d, "meta", meta = PyDict_New()) < 0)
        goto fail;
    for (i = 0; i < vmp_profile_meta_count(p); i++) {
        const char *k, *val;
        size_t kl, vl;
        vmp_profile_meta_at(p, i, &k, &kl, &val, &vl);
        if (vmp_module_dict_set_new(meta, vmp_module_text(k, kl), vmp_module_text(val, vl)) < 0)
            goto fail;
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* Item makers for vmp_module_list_of over the view. */
typedef struct thread_ctx {
    const vmp_profile *p;
    const vmp_xview *v;
    const uint64_t *samples; /* per thread index */
} thread_ctx;

static PyObject *thread_item(const void *ctx, size_t i)
{
    const thread_ctx *c = ctx;
    return Py_BuildValue("(KKO)", (unsigned long long)vmp_profile_thread_id(c->p, i),
                         (unsigned long long)c->samples[i],
                         c->v->thread_on[i] ? Py_True : Py_False);
}

static PyObject *func_item(const void *view, size_t i)
{
    const vmp_xfunc *f = &((const vmp_xview *)view)->funcs[i];
    return Py_BuildValue("(NNII)", vmp_module_text(f->name, f->name_len),
                         vmp_module_text(f->file, f->file_len), f->first_line, (unsigned)f->kind);
}

static PyObject *frame_item(const void *view, size_t i)
{
    const vmp_xframe *fr = &((const vmp_xview *)view)->frames[i];
    return Py_BuildValue("(II)", fr->func, fr->line);
}

/* (thread index, (frame index, ...) root first, count) */
static PyObject *stack_item(const void *view, size_t i)
{
    const vmp_xstack *st = &((const vmp_xview *)view)->stacks[i];
    PyObject *frames = PyTuple_New(st->depth);
    if (!frames)
        return NULL;
    for (uint32_t j = 0; j < st->depth; j++) {
        PyObject *x = PyLong_FromUnsignedLong(st->frames[j]);
        if (!x) {
            Py_DECREF(frames);
            return NULL;
        }
        PyTuple_SET_ITEM(frames, j, x);
    }
    return Py_BuildValue("(INK)", st->thread, frames, (unsigned long long)st->count);
}

static PyObject *u64_item(const void *values, size_t i)
{
    return PyLong_FromUnsignedLongLong(((const uint64_t *)values)[i]);
}

static PyObject *build_view_data(const vmp_profile *p, const vmp_xview *v)
{
    size_t n_threads = vmp_profile_thread_count(p), i;
    uint64_t n = vmp_profile_get_summary(p)->n_samples, k;
    const vmp_profile_summary *s = vmp_profile_get_summary(p);
    PyObject *d = PyDict_New();
    uint64_t *per_thread = NULL;
    if (!d)
        return NULL;
    if (put(d, "summary", summary_dict(p, v)) < 0)
        goto fail;
    per_thread = calloc(n_threads + 1, sizeof *per_thread);
    if (!per_thread) {
        PyErr_NoMemory();
        goto fail;
    }
    for (i = 0; i < vmp_profile_stack_count(p); i++) {
        vmp_stack st;
        vmp_profile_stack_at(p, i, &st);
        if (st.thread_index < n_threads)
            per_thread[st.thread_index] += st.count;
    }
    thread_ctx tc = {p, v, per_thread};
    if (put(d, "threads", vmp_module_list_of(n_threads, thread_item, &tc)) < 0 ||
        put(d, "funcs", vmp_module_list_of(v->n_funcs, func_item, v)) < 0 ||
        put(d, "frames", vmp_module_list_of(v->n_frames, frame_item, v)) < 0 ||
        put(d, "stacks", vmp_module_list_of(v->n_stacks, stack_item, v)) < 0)
        goto fail;
    if ((s->mode & VMP_MODE_MEMORY) && n) {
        /* growth: each rise of RSS between consecutive samples is charged to
         * the stack of the later sample */
        uint64_t *growth = calloc(v->n_stacks + 1, sizeof *growth), prev = 0, bucket, at;
        PyObject *g, *series;
        if (!growth) {
            PyErr_NoMemory();
            goto fail;
        }
        for (k = 0; k < n; k++) {
            uint64_t rss = vmp_profile_sample_rss(p, k);
            uint32_t ps = vmp_profile_sample_stack(p, k), xs;
            if (k && rss > prev && ps < vmp_profile_stack_count(p) &&
                (xs = v->stack_map[ps]) != UINT32_MAX)
                growth[xs] += rss - prev;
            prev = rss;
        }
        g = vmp_module_list_of(v->n_stacks, u64_item, growth);
        free(growth);
        if (put(d, "rss_growth", g) < 0)
            goto fail;
        bucket = (n + RSS_SERIES_POINTS - 1) / RSS_SERIES_POINTS;
        if (put(d, "rss_series", series = PyList_New(0)) < 0)
            goto fail;
        for (k = 0; k < n; k += bucket) {
            uint64_t peak = 0, j;
            PyObject *pt;
            at = k;
            for (j = k; j < n && j < k + bucket; j++)
                if (vmp_profile_sample_rss(p, j) > peak) {
                    peak = vmp_profile_sample_rss(p, j);
                    at = j;
                }
            pt = Py_BuildValue("(dK)", vmp_xview_sample_ms(v, at), (unsigned long long)peak);
            if (!pt || PyList_Append(series, pt) < 0) {
                Py_XDECREF(pt);
                goto fail;
            }
            Py_DECREF(pt);
        }
    }
    free(per_thread);
    return d;
fail:
    free(per_thread);
    Py_DECREF(d);
    return NULL;
}

static PyObject *py_view_data(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"source", "thread", "lines", "no_native", NULL};
    PyObject *source = NULL, *thread = Py_None, *result = NULL;
    int lines = 0, no_native = 0, rc;
    vmp_export_options o;
    vmp_profile *p;
    vmp_xview v;
    vmp_error err;
    (void)self;
    memset(&o, 0, sizeof o);
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|Opp:view_data", kwlist, PyUnicode_FSConverter,
                                     &source, &thread, &lines, &no_native))
        return NULL;
    if (parse_thread(thread, &o) < 0)
        goto out;
    o.lines = lines;
    o.no_native = no_native;
    if (!(p = read_source(source)))
        goto out;
    vmp_error_clear(&err);
    Py_BEGIN_ALLOW_THREADS
    rc = vmp_xview_build(&v, p, &o, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        PyErr_SetString(vmp_module_error, err.message);
    else {
        result = build_view_data(p, &v);
        vmp_xview_free(&v);
    }
    vmp_profile_free(p);
out:
    Py_XDECREF(source);
    return result;
}

static PyMethodDef export_methods[] = {
    {"export", (PyCFunction)(void (*)(void))py_export, METH_VARARGS | METH_KEYWORDS,
     "export(source, format, output, thread=None, lines=False, no_native=False, title=None, "
     "html_min_fraction=0.0)\n--\n\nWrite the profile file `source` in `format` to `output` "
     "(a path or a file descriptor)."},
    {"export_formats", py_export_formats, METH_NOARGS,
     "export_formats()\n--\n\nThe names of the export formats."},
    {"view_data", (PyCFunction)(void (*)(void))py_view_data, METH_VARARGS | METH_KEYWORDS,
     "view_data(source, thread=None, lines=False, no_native=False)\n--\n\nThe profile's "
     "functions, frames and distinct stacks as Python data, for text views."},
    {NULL, NULL, 0, NULL},
};

int vmp_module_init_export(PyObject *module)
{
    return PyModule_AddFunctions(module, export_methods);
}

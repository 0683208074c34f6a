/*
 * module_reader.c - vmprof._core's reading types: Profile (a read profile) and
 * Tree (a call tree), thin views over vmp_profile.h and the query layer of
 * vmprof.h.
 *
 * Python objects are made only for what is asked: a Profile of a million
 * samples is one object; a sample, a stack, a node becomes a tuple only when
 * it is requested.  Reading releases the GIL: the C library calls no Python.
 */
#include "module.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "vmp_decode.h"
#include "vmp_format.h"
#include "vmp_name.h"
#include "vmp_profile.h"
#include "vmp_export.h"
#include "vmprof.h"

/* ---- Profile -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vmp_profile *p;
} ProfileObject;

static PyTypeObject Profile_Type;

vmp_profile *vmp_module_profile_of(PyObject *obj, PyObject **holder)
{
    *holder = NULL;
    if (PyObject_TypeCheck(obj, &Profile_Type)) {
        Py_INCREF(obj);
        *holder = obj;
        return ((ProfileObject *)obj)->p;
    }
    /* a Stats object: its _profile, kept by our reference (not by obj's) */
    PyObject *inner = PyObject_GetAttrString(obj, "_profile");
    if (inner && PyObject_TypeCheck(inner, &Profile_Type)) {
        *holder = inner;
        return ((ProfileObject *)inner)->p;
    }
    Py_XDECREF(inner);
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "expected a profile from vmprof.read_profile(), not %.100s",
                 Py_TYPE(obj)->tp_name);
    return NULL;
}

static PyObject *wrap_profile(vmp_profile *p, vmp_error *err)
{
    if (!p) {
        PyErr_SetString(vmp_module_error, err->message);
        return NULL;
    }
    ProfileObject *o = PyObject_New(ProfileObject, &Profile_Type);
    if (!o) {
        vmp_profile_free(p);
        return NULL;
    }
    o->p = p;
    return (PyObject *)o;
}

static void Profile_dealloc(ProfileObject *o)
{
    vmp_profile_free(o->p);
    PyObject_Free(o);
}

static PyObject *reader_read_file(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "strict", NULL};
    PyObject *path_obj = NULL;
    int strict = 0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|p", kwlist, PyUnicode_FSConverter, &path_obj,
                                     &strict))
        return NULL;
    vmp_read_options o = {strict};
    vmp_error err;
    vmp_profile *p;
    const char *path = PyBytes_AS_STRING(path_obj);
    Py_BEGIN_ALLOW_THREADS
    p = vmp_profile_read_file(path, &o, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    return wrap_profile(p, &err);
}

static PyObject *reader_read_fd(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fd", "strict", NULL};
    int fd, strict = 0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|p", kwlist, &fd, &strict))
        return NULL;
    vmp_read_options o = {strict};
    vmp_error err;
    vmp_profile *p;
    Py_BEGIN_ALLOW_THREADS
    p = vmp_profile_read_fd(fd, &o, &err);
    Py_END_ALLOW_THREADS
    return wrap_profile(p, &err);
}

static PyObject *reader_read_bytes(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data", "strict", NULL};
    Py_buffer buf;
    int strict = 0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|p", kwlist, &buf, &strict))
        return NULL;
    vmp_read_options o = {strict};
    vmp_error err;
    vmp_profile *p;
    Py_BEGIN_ALLOW_THREADS
    p = vmp_profile_read_memory(buf.buf, (size_t)buf.len, &o, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return wrap_profile(p, &err);
}

static PyObject *time_tuple(int has, int64_t sec, int64_t usec, const char *zone)
{
    if (!has)
        Py_RETURN_NONE;
    return Py_BuildValue("(LLs)", (long long)sec, (long long)usec, zone);
}

static PyObject *Profile_summary(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    const vmp_profile_summary *s = vmp_profile_get_summary(o->p);
    PyObject *start = time_tuple(s->has_start_time, s->start_sec, s->start_usec, s->start_zone);
    PyObject *end = time_tuple(s->has_end_time, s->end_sec, s->end_usec, s->end_zone);
    if (!start || !end) {
        Py_XDECREF(start);
        Py_XDECREF(end);
        return NULL;
    }
    return Py_BuildValue("{s:i,s:i,s:i,s:I,s:s,s:K,s:N,s:N,s:O,s:L,s:K,s:K}", "version",
                         s->version, "word_size", s->word_size, "addr_size", s->addr_size,
                         "mode", s->mode, "interp", s->interp, "period_usec",
                         (unsigned long long)s->period_usec, "start", start, "end", end,
                         "complete", s->complete ? Py_True : Py_False, "truncated_at",
                         (long long)s->truncated_at, "n_samples",
                         (unsigned long long)s->n_samples, "max_rss_kib",
                         (unsigned long long)s->max_rss_kib);
}

static PyObject *meta_item(const void *p, size_t i)
{
    const char *k, *v;
    size_t kl, vl;
    vmp_profile_meta_at(p, i, &k, &kl, &v, &vl);
    return Py_BuildValue("(NN)", vmp_module_text(k, kl), vmp_module_text(v, vl));
}

static PyObject *Profile_meta(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    return vmp_module_list_of(vmp_profile_meta_count(o->p), meta_item, o->p);
}

static PyObject *Profile_names(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    size_t n = vmp_profile_name_count(o->p);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        const char *s;
        size_t len;
        vmp_profile_name_at(o->p, i, &id, &s, &len);
        PyObject *k = PyLong_FromUnsignedLongLong(id);
        if (vmp_module_dict_set_new(d, k, vmp_module_text(s, len)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *Profile_name(ProfileObject *o, PyObject *arg)
{
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE; /* negative or huge: no such id */
    }
    size_t len;
    const char *s = vmp_profile_name(o->p, id, &len);
    if (!s)
        Py_RETURN_NONE;
    return vmp_module_text(s, len);
}

static PyObject *thread_item(const void *p, size_t i)
{
    return PyLong_FromUnsignedLongLong(vmp_profile_thread_id(p, i));
}

static PyObject *Profile_threads(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    return vmp_module_list_of(vmp_profile_thread_count(o->p), thread_item, o->p);
}

static PyObject *Profile_stack_count(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    return PyLong_FromSize_t(vmp_profile_stack_count(o->p));
}

/* stack(i) -> (frames, thread_index, count); frames root first, each
 * (addr, line, kind). */
static PyObject *Profile_stack(ProfileObject *o, PyObject *arg)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || (size_t)i >= vmp_profile_stack_count(o->p)) {
        PyErr_SetString(PyExc_IndexError, "stack index out of range");
        return NULL;
    }
    vmp_stack st;
    vmp_profile_stack_at(o->p, (size_t)i, &st);
    PyObject *frames = PyTuple_New(st.depth);
    if (!frames)
        return NULL;
    for (uint32_t j = 0; j < st.depth; j++) {
        PyObject *f = Py_BuildValue("(KIi)", (unsigned long long)st.frames[j].addr,
                                    st.frames[j].line, (int)st.frames[j].kind);
        if (!f) {
            Py_DECREF(frames);
            return NULL;
        }
        PyTuple_SET_ITEM(frames, j, f);
    }
    return Py_BuildValue("(NIK)", frames, st.thread_index, (unsigned long long)st.count);
}

/* sample(i) -> (stack_index, rss_kib) */
static PyObject *Profile_sample(ProfileObject *o, PyObject *arg)
{
    long long i = PyLong_AsLongLong(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    const vmp_profile_summary *s = vmp_profile_get_summary(o->p);
    if (i < 0 || (uint64_t)i >= s->n_samples) {
        PyErr_SetString(PyExc_IndexError, "sample index out of range");
        return NULL;
    }
    return Py_BuildValue("(IK)", vmp_profile_sample_stack(o->p, (uint64_t)i),
                         (unsigned long long)vmp_profile_sample_rss(o->p, (uint64_t)i));
}

static PyObject *rss_item(const void *p, size_t i)
{
    return PyLong_FromUnsignedLongLong(vmp_profile_sample_rss(p, i));
}

static PyObject *time_item(const void *p, size_t i)
{
    return PyLong_FromLongLong(vmp_profile_sample_time(p, i));
}

/* rss_series() -> list of RSS values in sample order (memory mode). */
static PyObject *Profile_rss_series(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    return vmp_module_list_of((size_t)vmp_profile_get_summary(o->p)->n_samples, rss_item, o->p);
}

/* time_series() -> list of per-sample timestamps in ns, or None (format < 7). */
static PyObject *Profile_time_series(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    if (!vmp_profile_has_sample_times(o->p))
        Py_RETURN_NONE;
    return vmp_module_list_of((size_t)vmp_profile_get_summary(o->p)->n_samples, time_item, o->p);
}

/* function_profile(addr) -> (dict addr -> samples, total): the query layer's
 * vmp_query_under on the original reader's frames (by address, runner kept):
 * below the outermost frame of addr's function, every address once per
 * sample (its codes of several kinds summed). */
static PyObject *Profile_function_profile(ProfileObject *o, PyObject *arg)
{
    unsigned long long top = PyLong_AsUnsignedLongLong(arg);
    if (top == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint32_t func = vmp_profile_func_of_addr(o->p, top);
    PyObject *result = PyDict_New();
    if (!result || func == VMP_NONE)
        return result ? Py_BuildValue("(NK)", result, 0ULL) : NULL;
    vmp_query q = {.frames = VMP_Q_BY_ADDRESS | VMP_Q_KEEP_RUNNER};
    vmp_error err;
    vmp_func_counts *fc = vmp_query_under(o->p, &q, func, &err);
    if (!fc) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_MemoryError, err.message);
        return NULL;
    }
    for (size_t i = 0; i < fc->n; i++) {
        PyObject *k = PyLong_FromUnsignedLongLong(fc->items[i].addr);
        if (!k)
            goto fail;
        PyObject *cur = PyDict_GetItem(result, k); /* borrowed */
        unsigned long long c = cur ? PyLong_AsUnsignedLongLong(cur) : 0;
        /* (takes k and the count) */
        if (vmp_module_dict_set_new(result, k, PyLong_FromUnsignedLongLong(
                                                   c + fc->items[i].total)) < 0)
            goto fail;
    }
    unsigned long long total = fc->samples;
    vmp_result_free(fc);
    return Py_BuildValue("(NK)", result, total);
fail:
    Py_DECREF(result);
    vmp_result_free(fc);
    return NULL;
}

/* ---- queries (vmprof.h) ----------------------------------------------------- */

#define QUERY_DOC                                                                          \
    "\n\nquery keywords: thread (a thread index), samples ((begin, end) sample indices), "  \
    "time_ms ((begin, end) ms from the start), frames (Q_* flags), root_path (function "   \
    "indices), max_depth, min_fraction"

/* A query from keyword arguments; root (when root_path is given) must be
 * freed with PyMem_Free. */
typedef struct query_args {
    vmp_query q;
    uint32_t *root;
} query_args;

static int parse_pair(PyObject *v, const char *what, double *a, double *b)
{
    if (!PyArg_ParseTuple(v, "dd", a, b)) {
        PyErr_Format(PyExc_TypeError, "%s must be a (begin, end) pair", what);
        return -1;
    }
    return 0;
}

/* Takes the query keywords out of kw (which may be NULL); others are left. */
static int parse_query(PyObject *kw, query_args *qa)
{
    memset(qa, 0, sizeof *qa);
    if (!kw)
        return 0;
    PyObject *v;
    if ((v = PyDict_GetItemString(kw, "thread")) && v != Py_None) {
        long t = PyLong_AsLong(v);
        if (t == -1 && PyErr_Occurred())
            return -1;
        if (t >= 0) {
            qa->q.thread_set = 1;
            qa->q.thread = (uint32_t)t;
        }
    }
    if ((v = PyDict_GetItemString(kw, "samples")) && v != Py_None) {
        double b, e;
        if (parse_pair(v, "samples", &b, &e) < 0)
            return -1;
        qa->q.sample_range_set = 1;
        qa->q.sample_begin = b < 0 ? 0 : (uint64_t)b;
        qa->q.sample_end = e < 0 ? 0 : (uint64_t)e;
    }
    if ((v = PyDict_GetItemString(kw, "time_ms")) && v != Py_None) {
        if (parse_pair(v, "time_ms", &qa->q.time_begin_ms, &qa->q.time_end_ms) < 0)
            return -1;
        qa->q.time_range_set = 1;
    }
    if ((v = PyDict_GetItemString(kw, "frames")) && v != Py_None) {
        long f = PyLong_AsLong(v);
        if (f == -1 && PyErr_Occurred())
            return -1;
        qa->q.frames = (unsigned)f;
    }
    if ((v = PyDict_GetItemString(kw, "max_depth")) && v != Py_None) {
        long d = PyLong_AsLong(v);
        if (d == -1 && PyErr_Occurred())
            return -1;
        qa->q.max_depth = d < 0 ? 0 : (uint32_t)d;
    }
    if ((v = PyDict_GetItemString(kw, "min_fraction")) && v != Py_None) {
        qa->q.min_fraction = PyFloat_AsDouble(v);
        if (PyErr_Occurred())
            return -1;
    }
    if ((v = PyDict_GetItemString(kw, "root_path")) && v != Py_None) {
        PyObject *seq = PySequence_Fast(v, "root_path must be a sequence of function indices");
        if (!seq)
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        qa->root = PyMem_Malloc((n ? n : 1) * sizeof *qa->root);
        if (!qa->root) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned long f = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(seq, i));
            if (f == (unsigned long)-1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
            qa->root[i] = (uint32_t)f;
        }
        Py_DECREF(seq);
        qa->q.root_path = qa->root;
        qa->q.root_path_len = (size_t)n;
    }
    static const char *const known[] = {"thread", "samples", "time_ms", "frames", "max_depth",
                                        "min_fraction", "root_path", NULL};
    for (int i = 0; known[i]; i++)
        if (PyDict_GetItemString(kw, known[i]) && PyDict_DelItemString(kw, known[i]) < 0)
            return -1;
    return 0;
}

static void query_args_free(query_args *qa)
{
    PyMem_Free(qa->root);
    qa->root = NULL;
}

/* The keywords left after the query's must be none. */
static int no_more_keywords(PyObject *kw, const char *fn)
{
    if (kw && PyDict_Size(kw)) {
        PyObject *key = NULL, *value;
        Py_ssize_t pos = 0;
        PyDict_Next(kw, &pos, &key, &value);
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fn, key);
        return -1;
    }
    return 0;
}

/* kw copied, so that parse_query may take its keywords out */
static PyObject *kw_copy(PyObject *kw)
{
    return kw ? PyDict_Copy(kw) : PyDict_New();
}

static PyObject *query_error(const vmp_error *err)
{
    PyErr_SetString(vmp_module_error, err->message);
    return NULL;
}

static PyObject *Profile_facts(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    vmp_facts f;
    vmp_profile_facts(o->p, &f);
    return Py_BuildValue(
        "{s:s,s:N,s:i,s:K,s:K,s:n,s:n,s:O,s:O,s:O,s:O,s:O,s:d,s:O,s:L,s:K}", "interp", f.interp,
        "argv", vmp_module_text(f.argv, strlen(f.argv)), "version", f.version, "period_usec",
        (unsigned long long)f.period_usec, "n_samples", (unsigned long long)f.n_samples,
        "n_threads", (Py_ssize_t)f.n_threads, "n_functions", (Py_ssize_t)f.n_functions, "lines",
        f.lines ? Py_True : Py_False, "memory", f.memory ? Py_True : Py_False, "native",
        f.native ? Py_True : Py_False, "real_time", f.real_time ? Py_True : Py_False, "rpython",
        f.rpython ? Py_True : Py_False, "duration_ms", f.duration_ms, "complete",
        f.complete ? Py_True : Py_False, "truncated_at", (long long)f.truncated_at, "max_rss_kib",
        (unsigned long long)f.max_rss_kib);
}

static PyObject *func_row(const void *funcs, size_t i)
{
    const vmp_func *f = (const vmp_func *)funcs + i;
    return Py_BuildValue("(NNIiOiK)", vmp_module_text(f->name, strlen(f->name)),
                         vmp_module_text(f->file, strlen(f->file)), f->first_line, (int)f->kind,
                         f->interpreter ? Py_True : Py_False, (int)f->runner, (unsigned long long)f->addr);
}

static PyObject *Profile_funcs(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    size_t n;
    const vmp_func *f = vmp_profile_funcs(o->p, &n);
    return vmp_module_list_of(n, func_row, f);
}

static PyObject *thread_samples_item(const void *p, size_t i)
{
    return PyLong_FromUnsignedLongLong(vmp_profile_thread_samples(p, i));
}

static PyObject *Profile_thread_samples(ProfileObject *o, PyObject *unused)
{
    (void)unused;
    return vmp_module_list_of(vmp_profile_thread_count(o->p), thread_samples_item, o->p);
}

static PyObject *Profile_sample_ms(ProfileObject *o, PyObject *arg)
{
    unsigned long long i = PyLong_AsUnsignedLongLong(arg);
    if (i == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyFloat_FromDouble(vmp_profile_sample_ms(o->p, i));
}

static PyObject *Profile_query_count(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    PyObject *k = kw_copy(kw), *r = NULL;
    if (!k || PyTuple_GET_SIZE(args) || parse_query(k, &qa) < 0 ||
        no_more_keywords(k, "query_count") < 0)
        goto out;
    vmp_error_clear(&err);
    uint64_t n = vmp_query_count(o->p, &qa.q, &err);
    r = err.message[0] ? query_error(&err) : PyLong_FromUnsignedLongLong(n);
out:
    if (!r && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "query_count() takes keyword arguments only");
    query_args_free(&qa);
    Py_XDECREF(k);
    return r;
}

static PyObject *wrap_tree(vmp_tree *t, PyObject *profile, PyObject *profile_b);

static PyObject *Profile_query_tree(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_tree *t = NULL;
    PyObject *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_TypeError, "query_tree() takes keyword arguments only");
        goto out;
    }
    if (parse_query(k, &qa) < 0 || no_more_keywords(k, "query_tree") < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    t = vmp_query_tree(o->p, &qa.q, &err);
    Py_END_ALLOW_THREADS
    if (!t)
        query_error(&err);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return t ? wrap_tree(t, (PyObject *)o, NULL) : NULL;
}

static PyTypeObject Profile_Type;

static PyObject *Profile_query_diff(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_tree *t = NULL;
    PyObject *other, *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (!PyArg_ParseTuple(args, "O!:query_diff", &Profile_Type, &other))
        goto out;
    if (parse_query(k, &qa) < 0 || no_more_keywords(k, "query_diff") < 0)
        goto out;
    vmp_query qb = qa.q;
    qb.thread_set = 0; /* a thread index names a's thread */
    Py_BEGIN_ALLOW_THREADS
    t = vmp_query_diff(o->p, &qa.q, ((ProfileObject *)other)->p, &qb, &err);
    Py_END_ALLOW_THREADS
    if (!t)
        query_error(&err);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return t ? wrap_tree(t, (PyObject *)o, other) : NULL;
}

static PyObject *count_row(const void *items, size_t i)
{
    const vmp_func_count *c = (const vmp_func_count *)items + i;
    return Py_BuildValue("(IKiKK)", c->func, (unsigned long long)c->addr, (int)c->kind,
                         (unsigned long long)c->self, (unsigned long long)c->total);
}

static PyObject *pair_row(const void *items, size_t i)
{
    const vmp_func_count *c = (const vmp_func_count *)items + i;
    return Py_BuildValue("(IK)", c->func, (unsigned long long)c->total);
}

static PyObject *Profile_query_functions(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_func_counts *fc = NULL;
    PyObject *r = NULL, *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_TypeError, "query_functions() takes keyword arguments only");
        goto out;
    }
    if (parse_query(k, &qa) < 0 || no_more_keywords(k, "query_functions") < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    fc = vmp_query_functions(o->p, &qa.q, &err);
    Py_END_ALLOW_THREADS
    r = fc ? vmp_module_list_of(fc->n, count_row, fc->items) : query_error(&err);
    vmp_result_free(fc);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return r;
}

static PyObject *Profile_query_neighbours(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_neighbours *nb = NULL;
    unsigned int func;
    PyObject *r = NULL, *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (!PyArg_ParseTuple(args, "I:query_neighbours", &func) || parse_query(k, &qa) < 0 ||
        no_more_keywords(k, "query_neighbours") < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    nb = vmp_query_neighbours(o->p, &qa.q, func, &err);
    Py_END_ALLOW_THREADS
    if (!nb) {
        query_error(&err);
        goto out;
    }
    r = Py_BuildValue("(KKKNN)", (unsigned long long)nb->self, (unsigned long long)nb->total,
                      (unsigned long long)nb->samples,
                      vmp_module_list_of(nb->n_callers, pair_row, nb->callers),
                      vmp_module_list_of(nb->n_callees, pair_row, nb->callees));
    vmp_result_free(nb);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return r;
}

static PyObject *line_row(const void *items, size_t i)
{
    const vmp_line_count *l = (const vmp_line_count *)items + i;
    return Py_BuildValue("(IK)", l->line, (unsigned long long)l->count);
}

static PyObject *func_lines_row(const void *items, size_t i)
{
    const vmp_func_lines *f = (const vmp_func_lines *)items + i;
    return Py_BuildValue("(IKN)", f->func, (unsigned long long)f->total,
                         vmp_module_list_of(f->n_lines, line_row, f->lines));
}

static PyObject *Profile_query_lines(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_line_counts *lc = NULL;
    PyObject *func = Py_None, *r = NULL, *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (!PyArg_ParseTuple(args, "|O:query_lines", &func))
        goto out;
    if (PyDict_GetItemString(k, "func")) {
        func = PyDict_GetItemString(k, "func");
        PyDict_DelItemString(k, "func");
    }
    uint32_t f = VMP_NONE;
    if (func != Py_None) {
        unsigned long v = PyLong_AsUnsignedLong(func);
        if (v == (unsigned long)-1 && PyErr_Occurred())
            goto out;
        f = (uint32_t)v;
    }
    if (parse_query(k, &qa) < 0 || no_more_keywords(k, "query_lines") < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    lc = vmp_query_lines(o->p, &qa.q, f, &err);
    Py_END_ALLOW_THREADS
    if (!lc) {
        query_error(&err);
        goto out;
    }
    r = Py_BuildValue("(KN)", (unsigned long long)lc->samples,
                      vmp_module_list_of(lc->n_funcs, func_lines_row, lc->funcs));
    vmp_result_free(lc);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return r;
}

static PyObject *rss_point_row(const void *items, size_t i)
{
    const vmp_rss_point *pt = (const vmp_rss_point *)items + i;
    return Py_BuildValue("(dK)", pt->ms, (unsigned long long)pt->rss_kib);
}

static PyObject *Profile_query_rss(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    vmp_rss_series *rs = NULL;
    Py_ssize_t points;
    PyObject *r = NULL, *k = kw_copy(kw);
    if (!k)
        return NULL;
    if (!PyArg_ParseTuple(args, "n:query_rss", &points) || parse_query(k, &qa) < 0 ||
        no_more_keywords(k, "query_rss") < 0)
        goto out;
    if (points < 1) {
        PyErr_SetString(PyExc_ValueError, "query_rss needs at least 1 point");
        goto out;
    }
    Py_BEGIN_ALLOW_THREADS
    rs = vmp_query_rss(o->p, &qa.q, (size_t)points, &err);
    Py_END_ALLOW_THREADS
    if (!rs) {
        query_error(&err);
        goto out;
    }
    r = Py_BuildValue("{s:N,s:K,s:d,s:K,s:K,s:N}", "points",
                      vmp_module_list_of(rs->n, rss_point_row, rs->points), "peak_kib",
                      (unsigned long long)rs->peak_kib, "peak_ms", rs->peak_ms, "first_kib",
                      (unsigned long long)rs->first_kib, "last_kib",
                      (unsigned long long)rs->last_kib, "growth",
                      vmp_module_list_of(rs->n_growth, pair_row, rs->growth));
    vmp_result_free(rs);
out:
    query_args_free(&qa);
    Py_DECREF(k);
    return r;
}

static int fd_sink_write(void *ctx, const void *data, size_t len)
{
    int fd = *(const int *)ctx;
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int file_sink_write(void *ctx, const void *data, size_t len)
{
    return fwrite(data, 1, len, ctx) == len ? 0 : -1;
}

static PyObject *Profile_export(ProfileObject *o, PyObject *args, PyObject *kw)
{
    query_args qa = {0};
    vmp_error err;
    const char *format, *title = NULL;
    PyObject *output, *title_obj = Py_None, *out_path = NULL, *r = NULL, *k = kw_copy(kw);
    double min_fraction = 0;
    int fd = -1, rc;
    if (!k)
        return NULL;
    if (!PyArg_ParseTuple(args, "sO:export", &format, &output))
        goto out;
    if (PyDict_GetItemString(k, "title")) {
        title_obj = PyDict_GetItemString(k, "title");
        Py_INCREF(title_obj);
        PyDict_DelItemString(k, "title");
    } else {
        Py_INCREF(title_obj);
    }
    if (PyDict_GetItemString(k, "html_min_fraction")) {
        min_fraction = PyFloat_AsDouble(PyDict_GetItemString(k, "html_min_fraction"));
        PyDict_DelItemString(k, "html_min_fraction");
        if (PyErr_Occurred())
            goto out_title;
    }
    if (title_obj != Py_None && !(title = PyUnicode_AsUTF8(title_obj)))
        goto out_title;
    if (parse_query(k, &qa) < 0 || no_more_keywords(k, "export") < 0)
        goto out_title;
    if (PyLong_Check(output)) {
        long lfd = PyLong_AsLong(output);
        if (lfd < 0 || lfd > INT_MAX) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "output file descriptor must be >= 0");
            goto out_title;
        }
        fd = (int)lfd;
    } else if (!PyUnicode_FSConverter(output, &out_path)) {
        goto out_title;
    }
    vmp_export_settings st = {title, min_fraction};
    FILE *f = NULL;
    if (fd < 0 && !(f = fopen(PyBytes_AS_STRING(out_path), "wb"))) {
        PyErr_Format(vmp_module_error, "cannot create %s: %s; check that its folder exists and is "
                                       "writable",
                     PyBytes_AS_STRING(out_path), strerror(errno));
        goto out_title;
    }
    vmp_sink sink = fd >= 0 ? (vmp_sink){fd_sink_write, &fd} : (vmp_sink){file_sink_write, f};
    Py_BEGIN_ALLOW_THREADS
    rc = vmp_query_export(o->p, &qa.q, format, &st, &sink, &err);
    if (f && fclose(f) != 0 && rc == 0)
        rc = vmp_error_set(&err, -1, "writing %s failed: %s", PyBytes_AS_STRING(out_path),
                           strerror(errno));
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        query_error(&err);
    } else {
        Py_INCREF(Py_None);
        r = Py_None;
    }
out_title:
    Py_DECREF(title_obj);
out:
    query_args_free(&qa);
    Py_XDECREF(out_path);
    Py_DECREF(k);
    return r;
}

static PyMethodDef Profile_methods[] = {
    {"summary", (PyCFunction)Profile_summary, METH_NOARGS,
     "summary() -> dict: version, word_size, addr_size, mode, interp, period_usec, start, "
     "end, complete, truncated_at, n_samples, max_rss_kib"},
    {"meta", (PyCFunction)Profile_meta, METH_NOARGS, "meta() -> [(key, value)] in file order"},
    {"names", (PyCFunction)Profile_names, METH_NOARGS, "names() -> {addr: name}"},
    {"name", (PyCFunction)Profile_name, METH_O, "name(addr) -> str or None"},
    {"threads", (PyCFunction)Profile_threads, METH_NOARGS,
     "threads() -> [thread id] in order of first appearance"},
    {"stack_count", (PyCFunction)Profile_stack_count, METH_NOARGS,
     "stack_count() -> number of unique (thread, stack) pairs"},
    {"stack", (PyCFunction)Profile_stack, METH_O,
     "stack(i) -> (((addr, line, kind), ...) root first, thread_index, count)"},
    {"sample", (PyCFunction)Profile_sample, METH_O, "sample(i) -> (stack_index, rss_kib)"},
    {"rss_series", (PyCFunction)Profile_rss_series, METH_NOARGS,
     "rss_series() -> [rss_kib] per sample"},
    {"time_series", (PyCFunction)Profile_time_series, METH_NOARGS,
     "time_series() -> [ns] per sample (format 7), or None"},
    {"function_profile", (PyCFunction)Profile_function_profile, METH_O,
     "function_profile(addr) -> ({addr: samples}, total)"},
    {"facts", (PyCFunction)Profile_facts, METH_NOARGS,
     "facts() -> dict: the profile's facts (vmprof.h vmp_facts)"},
    {"funcs", (PyCFunction)Profile_funcs, METH_NOARGS,
     "funcs() -> [(name, file, first_line, kind, interpreter, runner, addr)]: the function "
     "table, indexed as query results name functions (runner: 0, 1 the runner's, 2 the "
     "interpreter's start-up, as vmp_func.runner)"},
    {"thread_samples", (PyCFunction)Profile_thread_samples, METH_NOARGS,
     "thread_samples() -> [samples] per thread index"},
    {"sample_ms", (PyCFunction)Profile_sample_ms, METH_O,
     "sample_ms(i) -> milliseconds from the start to sample i"},
    {"query_count", (PyCFunction)(void (*)(void))Profile_query_count, METH_VARARGS | METH_KEYWORDS,
     "query_count(**query) -> samples selected" QUERY_DOC},
    {"query_tree", (PyCFunction)(void (*)(void))Profile_query_tree, METH_VARARGS | METH_KEYWORDS,
     "query_tree(**query) -> Tree" QUERY_DOC},
    {"query_diff", (PyCFunction)(void (*)(void))Profile_query_diff, METH_VARARGS | METH_KEYWORDS,
     "query_diff(other, **query) -> Tree of both profiles (total_b, self_b: other's)"},
    {"query_functions", (PyCFunction)(void (*)(void))Profile_query_functions,
     METH_VARARGS | METH_KEYWORDS,
     "query_functions(**query) -> [(func, addr, kind, self, total)], by total"},
    {"query_neighbours", (PyCFunction)(void (*)(void))Profile_query_neighbours,
     METH_VARARGS | METH_KEYWORDS,
     "query_neighbours(func, **query) -> (self, total, samples, [(caller, samples)], "
     "[(callee, samples)])"},
    {"query_lines", (PyCFunction)(void (*)(void))Profile_query_lines, METH_VARARGS | METH_KEYWORDS,
     "query_lines(func=None, **query) -> (samples, [(func, total, [(line, samples)])])"},
    {"query_rss", (PyCFunction)(void (*)(void))Profile_query_rss, METH_VARARGS | METH_KEYWORDS,
     "query_rss(points, **query) -> dict: points [(ms, kib)], peak_kib, peak_ms, first_kib, "
     "last_kib, growth [(func, kib)]"},
    {"export", (PyCFunction)(void (*)(void))Profile_export, METH_VARARGS | METH_KEYWORDS,
     "export(format, output, title=None, html_min_fraction=0.0, **query): writes the "
     "selected samples in format to output (a path, or a file descriptor left open)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Profile_len(ProfileObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLongLong(vmp_profile_get_summary(o->p)->n_samples);
}

static PyGetSetDef Profile_getset[] = {
    {"n_samples", (getter)Profile_len, NULL, "number of samples", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Profile_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vmprof._core.Profile",
    .tp_basicsize = sizeof(ProfileObject),
    .tp_dealloc = (destructor)Profile_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A profile read by read_file/read_fd/read_bytes (held in C).",
    .tp_methods = Profile_methods,
    .tp_getset = Profile_getset,
};

/* ---- Tree: a query's call tree ---------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vmp_tree *t;
    PyObject *profile, *profile_b; /* keep the profiles alive (profile_b: a diff's) */
} TreeObject;

static PyTypeObject Tree_Type;

static PyObject *wrap_tree(vmp_tree *t, PyObject *profile, PyObject *profile_b)
{
    TreeObject *to = PyObject_New(TreeObject, &Tree_Type);
    if (!to) {
        vmp_result_free(t);
        return NULL;
    }
    to->t = t;
    Py_INCREF(profile);
    to->profile = profile;
    Py_XINCREF(profile_b);
    to->profile_b = profile_b;
    return (PyObject *)to;
}

static void Tree_dealloc(TreeObject *o)
{
    vmp_result_free(o->t);
    Py_XDECREF(o->profile);
    Py_XDECREF(o->profile_b);
    PyObject_Free(o);
}

static int node_index(TreeObject *o, PyObject *arg, uint32_t *out)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || (size_t)i >= o->t->n_nodes) {
        PyErr_SetString(PyExc_IndexError, "node index out of range");
        return -1;
    }
    *out = (uint32_t)i;
    return 0;
}

static PyObject *node_row(const vmp_tree *t, size_t i)
{
    const vmp_tree_node *n = &t->nodes[i];
    vmp_tree_counts b = t->b ? t->b[i] : (vmp_tree_counts){0, 0};
    return Py_BuildValue("(lKiKKlIIKKKII)", n->func == VMP_NONE ? -1L : (long)n->func,
                         (unsigned long long)n->addr, (int)n->kind, (unsigned long long)n->total,
                         (unsigned long long)n->self,
                         n->parent == VMP_NONE ? -1L : (long)n->parent, n->n_children, n->line,
                         (unsigned long long)b.total, (unsigned long long)b.self,
                         (unsigned long long)n->cut, n->depth, n->n_cut);
}

/* node(i) -> (func or -1, addr, kind, total, self, parent or -1, n_children,
 * line, total_b, self_b, cut, depth, n_cut) */
static PyObject *Tree_node(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    return node_row(o->t, i);
}

static PyObject *tree_row(const void *t, size_t i)
{
    return node_row(t, i);
}

static PyObject *Tree_nodes(TreeObject *o, PyObject *unused)
{
    (void)unused;
    return vmp_module_list_of(o->t->n_nodes, tree_row, o->t);
}

static PyObject *Tree_children(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    const vmp_tree_node *nodes = o->t->nodes, *n = &nodes[i];
    PyObject *list = PyList_New(n->n_children);
    if (!list)
        return NULL;
    Py_ssize_t k = 0;
    for (uint32_t c = n->first_child; c != VMP_NONE; c = nodes[c].next_sibling) {
        PyObject *v = PyLong_FromUnsignedLong(c);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k++, v);
    }
    return list;
}

static PyObject *Tree_lines(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    size_t n;
    const vmp_line_count *lines = vmp_tree_lines(o->t, i, &n);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (size_t k = 0; k < n; k++) {
        const vmp_line_count *l = &lines[k];
        if (vmp_module_dict_set_new(d, PyLong_FromUnsignedLong(l->line),
                                    PyLong_FromUnsignedLongLong(l->count)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

/* meta(i) -> {kind: count} for the non-zero kinds */
static PyObject *Tree_meta(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    PyObject *d = PyDict_New();
    uint32_t m = o->t->nodes[i].meta;
    if (!d || m == VMP_NONE)
        return d;
    for (int k = 0; k < VMP_FRAME_KIND_COUNT; k++) {
        if (o->t->meta[m][k] && vmp_module_dict_set_new(d, PyLong_FromLong(k),
                                                        PyLong_FromUnsignedLongLong(o->t->meta[m][k])) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *Tree_find_child(TreeObject *o, PyObject *args)
{
    Py_ssize_t node;
    unsigned long long addr;
    int kind;
    if (!PyArg_ParseTuple(args, "nKi", &node, &addr, &kind))
        return NULL;
    if (node < 0 || (size_t)node >= o->t->n_nodes) {
        PyErr_SetString(PyExc_IndexError, "node index out of range");
        return NULL;
    }
    const vmp_tree_node *nodes = o->t->nodes;
    for (uint32_t c = nodes[node].first_child; c != VMP_NONE; c = nodes[c].next_sibling)
        if (nodes[c].addr == addr && nodes[c].kind == kind)
            return PyLong_FromUnsignedLong(c);
    return PyLong_FromLong(-1);
}

/* A node's function as a func row of its profile (a diff's functions only
 * the second profile has come from that profile). */
static PyObject *Tree_func(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    const vmp_func *f = vmp_tree_func(o->t, i);
    if (!f)
        Py_RETURN_NONE;
    return func_row(f, 0);
}

static PyObject *Tree_node_count(TreeObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromSize_t(o->t->n_nodes);
}

static PyObject *Tree_samples(TreeObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLongLong(o->t->samples);
}

static PyObject *Tree_samples_b(TreeObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLongLong(o->t->samples_b);
}

static PyMethodDef Tree_methods[] = {
    {"node", (PyCFunction)Tree_node, METH_O,
     "node(i) -> (func, addr, kind, total, self, parent, n_children, line, total_b, self_b, "
     "cut, depth, n_cut); node 0 is the root, nodes are in depth-first order"},
    {"nodes", (PyCFunction)Tree_nodes, METH_NOARGS, "nodes() -> [node(i) for every i]"},
    {"children", (PyCFunction)Tree_children, METH_O,
     "children(i) -> [node index], highest count first"},
    {"lines", (PyCFunction)Tree_lines, METH_O, "lines(i) -> {line: samples}"},
    {"meta", (PyCFunction)Tree_meta, METH_O, "meta(i) -> {frame kind: samples}"},
    {"find_child", (PyCFunction)Tree_find_child, METH_VARARGS,
     "find_child(i, addr, kind) -> node index or -1"},
    {"func", (PyCFunction)Tree_func, METH_O, "func(i) -> the node's function row, or None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tree_getset[] = {
    {"node_count", (getter)Tree_node_count, NULL, "number of nodes, the root included", NULL},
    {"samples", (getter)Tree_samples, NULL, "samples selected (the shares' base)", NULL},
    {"samples_b", (getter)Tree_samples_b, NULL, "a diff: the second profile's", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Tree_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vmprof._core.Tree",
    .tp_basicsize = sizeof(TreeObject),
    .tp_dealloc = (destructor)Tree_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A call tree of a Profile (held in C); see Profile.query_tree().",
    .tp_methods = Tree_methods,
    .tp_getset = Tree_getset,
};

/* parse_name(text) -> (lang, function, line, file): the name grammar of
 * vmp_name.h ("py:f:3:m.py" -> ("py", "f", 3, "m.py"); lang "" when the
 * text has neither prefix, and then it is all function). */
static PyObject *reader_parse_name(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!text)
        return NULL;
    vmp_name_parts parts;
    vmp_name_parse(text, (size_t)len, &parts);
    const char *lang = parts.lang == VMP_NAME_PYTHON ? "py" : parts.lang == VMP_NAME_NATIVE ? "n" : "";
    return Py_BuildValue("(sNIN)", lang, vmp_module_text(parts.func, parts.func_len), parts.line,
                         vmp_module_text(parts.file, parts.file_len));
}

static PyMethodDef reader_functions[] = {
    {"parse_name", reader_parse_name, METH_O,
     "parse_name(text) -> (lang, function, line, file): a name record's parts"},
    {"read_file", (PyCFunction)(void (*)(void))reader_read_file, METH_VARARGS | METH_KEYWORDS,
     "read_file(path, strict=False) -> Profile (plain or gzip)"},
    {"read_fd", (PyCFunction)(void (*)(void))reader_read_fd, METH_VARARGS | METH_KEYWORDS,
     "read_fd(fd, strict=False) -> Profile: reads fd to its end, does not close it"},
    {"read_bytes", (PyCFunction)(void (*)(void))reader_read_bytes, METH_VARARGS | METH_KEYWORDS,
     "read_bytes(data, strict=False) -> Profile"},
    {NULL, NULL, 0, NULL},
};

int vmp_module_init_reader(PyObject *module)
{
    static const struct {
        const char *name;
        PyTypeObject *type;
    } types[] = {{"Profile", &Profile_Type}, {"Tree", &Tree_Type}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (PyType_Ready(types[i].type) < 0)
            return -1;
        Py_INCREF(types[i].type);
        if (PyModule_AddObject(module, types[i].name, (PyObject *)types[i].type) < 0) {
            Py_DECREF(types[i].type);
            return -1;
        }
    }
    if (PyModule_AddFunctions(module, reader_functions) < 0)
        return -1;
    static const struct {
        const char *name;
        long value;
    } consts[] = {
        {"FRAME_PYTHON", VMP_FRAME_PYTHON},       {"FRAME_NATIVE", VMP_FRAME_NATIVE},
        {"FRAME_JIT", VMP_FRAME_JIT},             {"FRAME_GC", VMP_FRAME_GC},
        {"FRAME_BLACKHOLE", VMP_FRAME_BLACKHOLE}, {"FRAME_ASSEMBLER", VMP_FRAME_ASSEMBLER},
        {"FRAME_JIT_TRACING", VMP_FRAME_JIT_TRACING},
        {"MODE_MEMORY", VMP_MODE_MEMORY},         {"MODE_LINES", VMP_MODE_LINES},
        {"MODE_NATIVE", VMP_MODE_NATIVE},         {"MODE_RPYTHON", VMP_MODE_RPYTHON},
        {"MODE_REAL_TIME", VMP_MODE_REAL_TIME},
        {"Q_PYTHON_ONLY", VMP_Q_PYTHON_ONLY},     {"Q_NO_NATIVE", VMP_Q_NO_NATIVE},
        {"Q_HIDE_INTERPRETER", VMP_Q_HIDE_INTERPRETER},
        {"Q_MERGE_RECURSION", VMP_Q_MERGE_RECURSION},
        {"Q_LINES", VMP_Q_LINES},                 {"Q_KEEP_RUNNER", VMP_Q_KEEP_RUNNER},
        {"Q_BY_ADDRESS", VMP_Q_BY_ADDRESS},
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
        if (PyModule_AddIntConstant(module, consts[i].name, consts[i].value) < 0)
            return -1;
    return 0;
}

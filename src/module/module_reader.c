/*
 * module_reader.c - vmprof._core's reading types: Profile (a read profile) and
 * Tree (its call tree), thin views over vmp_profile.h and vmp_atree.h.
 *
 * Python objects are made only for what is asked: a Profile of a million
 * samples is one object; a sample, a stack, a node becomes a tuple only when
 * it is requested.  Reading releases the GIL: the C library calls no Python.
 */
#include "module.h"

#include "vmp_decode.h"
#include "vmp_format.h"
#include "vmp_profile.h"
#include "vmp_atree.h"

/* ---- Profile -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vmp_profile *p;
} ProfileObject;

static PyTypeObject Profile_Type;

vmp_profile *vmp_module_profile_of(PyObject *obj)
{
    if (PyObject_TypeCheck(obj, &Profile_Type))
        return ((ProfileObject *)obj)->p;
    /* a Stats object: its _profile */
    PyObject *inner = PyObject_GetAttrString(obj, "_profile");
    vmp_profile *p = NULL;
    if (inner && PyObject_TypeCheck(inner, &Profile_Type))
        p = ((ProfileObject *)inner)->p;
    Py_XDECREF(inner); /* the Stats object keeps it alive */
    if (!p) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected a profile from vmprof.read_profile(), not %.100s",
                     Py_TYPE(obj)->tp_name);
    }
    return p;
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

/* function_profile(addr) -> (dict addr -> samples, total): below the first
 * occurrence of addr in each stack, every other function once per sample. */
static PyObject *Profile_function_profile(ProfileObject *o, PyObject *arg)
{
    unsigned long long top = PyLong_AsUnsignedLongLong(arg);
    if (top == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *result = PyDict_New();
    if (!result)
        return NULL;
    unsigned long long total = 0;
    size_t n = vmp_profile_stack_count(o->p);
    PyObject *seen = NULL;
    for (size_t i = 0; i < n; i++) {
        vmp_stack st;
        vmp_profile_stack_at(o->p, i, &st);
        uint32_t j = 0;
        while (j < st.depth && st.frames[j].addr != top)
            j++;
        if (j == st.depth)
            continue;
        total += st.count;
        seen = PySet_New(NULL);
        if (!seen)
            goto fail;
        for (j++; j < st.depth; j++) {
            PyObject *k = PyLong_FromUnsignedLongLong(st.frames[j].addr);
            if (!k)
                goto fail;
            int dup = PySet_Contains(seen, k);
            if (dup < 0 || (!dup && PySet_Add(seen, k) < 0)) {
                Py_DECREF(k);
                goto fail;
            }
            if (dup) {
                Py_DECREF(k);
                continue;
            }
            PyObject *cur = PyDict_GetItem(result, k);
            unsigned long long c = cur ? PyLong_AsUnsignedLongLong(cur) : 0;
            if (vmp_module_dict_set_new(result, k, PyLong_FromUnsignedLongLong(c + st.count)) < 0)
                goto fail;
        }
        Py_CLEAR(seen);
    }
    return Py_BuildValue("(NK)", result, total);
fail:
    Py_XDECREF(seen);
    Py_DECREF(result);
    return NULL;
}

static PyObject *Profile_tree(ProfileObject *o, PyObject *args, PyObject *kw);

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
    {"tree", (PyCFunction)(void (*)(void))Profile_tree, METH_VARARGS | METH_KEYWORDS,
     "tree(thread_index=-1, python_only=False) -> Tree"},
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

/* ---- Tree ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vmp_atree *t;
    PyObject *profile; /* keeps the profile alive */
    const vmp_atree_node *nodes;
    size_t n_nodes;
} TreeObject;

static PyTypeObject Tree_Type;

static PyObject *Profile_tree(ProfileObject *o, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"thread_index", "python_only", NULL};
    long long thread = -1;
    int python_only = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Lp", kwlist, &thread, &python_only))
        return NULL;
    if (thread >= (long long)vmp_profile_thread_count(o->p)) {
        PyErr_SetString(PyExc_IndexError, "thread index out of range");
        return NULL;
    }
    vmp_atree_options opt = {thread < 0 ? VMP_ATREE_ALL_THREADS : (uint32_t)thread,
                            python_only ? VMP_ATREE_PYTHON_ONLY : 0};
    vmp_error err;
    vmp_atree *t;
    Py_BEGIN_ALLOW_THREADS
    t = vmp_atree_build(o->p, &opt, &err);
    Py_END_ALLOW_THREADS
    if (!t) {
        PyErr_SetString(vmp_module_error, err.message);
        return NULL;
    }
    TreeObject *to = PyObject_New(TreeObject, &Tree_Type);
    if (!to) {
        vmp_atree_free(t);
        return NULL;
    }
    to->t = t;
    Py_INCREF(o);
    to->profile = (PyObject *)o;
    to->nodes = vmp_atree_nodes(t, &to->n_nodes);
    return (PyObject *)to;
}

static void Tree_dealloc(TreeObject *o)
{
    vmp_atree_free(o->t);
    Py_XDECREF(o->profile);
    PyObject_Free(o);
}

static int node_in_range(TreeObject *o, Py_ssize_t i)
{
    if (i < 0 || (size_t)i >= o->n_nodes) {
        PyErr_SetString(PyExc_IndexError, "node index out of range");
        return 0;
    }
    return 1;
}

static int node_index(TreeObject *o, PyObject *arg, uint32_t *out)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if ((i == -1 && PyErr_Occurred()) || !node_in_range(o, i))
        return -1;
    *out = (uint32_t)i;
    return 0;
}

/* node(i) -> (addr, kind, count, self_count, parent or -1, n_children) */
static PyObject *Tree_node(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    const vmp_atree_node *n = &o->nodes[i];
    return Py_BuildValue("(KiKKlI)", (unsigned long long)n->addr, (int)n->kind,
                         (unsigned long long)n->count, (unsigned long long)n->self_count,
                         n->parent == VMP_ATREE_NONE ? -1L : (long)n->parent, n->n_children);
}

static PyObject *Tree_children(TreeObject *o, PyObject *arg)
{
    uint32_t i;
    if (node_index(o, arg, &i) < 0)
        return NULL;
    const vmp_atree_node *n = &o->nodes[i];
    PyObject *list = PyList_New(n->n_children);
    if (!list)
        return NULL;
    Py_ssize_t k = 0;
    for (uint32_t c = n->first_child; c != VMP_ATREE_NONE; c = o->nodes[c].next_sibling) {
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
    size_t nl;
    const vmp_atree_line *lines = vmp_atree_lines(o->t, &nl);
    const vmp_atree_node *n = &o->nodes[i];
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (uint32_t k = 0; k < n->n_lines; k++) {
        const vmp_atree_line *l = &lines[n->lines_off + k];
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
    const uint64_t *meta = vmp_atree_meta(o->t, i);
    PyObject *d = PyDict_New();
    if (!d || !meta)
        return d;
    for (int k = 0; k < VMP_FRAME_KIND_COUNT; k++) {
        if (meta[k] && vmp_module_dict_set_new(d, PyLong_FromLong(k),
                                               PyLong_FromUnsignedLongLong(meta[k])) < 0) {
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
    if (!PyArg_ParseTuple(args, "nKi", &node, &addr, &kind) || !node_in_range(o, node))
        return NULL;
    uint32_t c = vmp_atree_find_child(o->t, (uint32_t)node, addr, (uint8_t)kind);
    if (c == VMP_ATREE_NONE)
        return PyLong_FromLong(-1);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *function_item(const void *funcs, size_t i)
{
    const vmp_afunc_stat *f = (const vmp_afunc_stat *)funcs + i;
    return Py_BuildValue("(KiKK)", (unsigned long long)f->addr, (int)f->kind,
                         (unsigned long long)f->inclusive, (unsigned long long)f->self);
}

/* functions() -> [(addr, kind, inclusive, self)], by inclusive descending */
static PyObject *Tree_functions(TreeObject *o, PyObject *unused)
{
    (void)unused;
    size_t n;
    const vmp_afunc_stat *f = vmp_atree_functions(o->t, &n);
    return vmp_module_list_of(n, function_item, f);
}

static PyObject *Tree_node_count(TreeObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromSize_t(o->n_nodes);
}

static PyMethodDef Tree_methods[] = {
    {"node", (PyCFunction)Tree_node, METH_O,
     "node(i) -> (addr, kind, count, self_count, parent, n_children); node 0 is the root"},
    {"children", (PyCFunction)Tree_children, METH_O,
     "children(i) -> [node index], highest count first"},
    {"lines", (PyCFunction)Tree_lines, METH_O, "lines(i) -> {line: samples}"},
    {"meta", (PyCFunction)Tree_meta, METH_O, "meta(i) -> {frame kind: samples}"},
    {"find_child", (PyCFunction)Tree_find_child, METH_VARARGS,
     "find_child(i, addr, kind) -> node index or -1"},
    {"functions", (PyCFunction)Tree_functions, METH_NOARGS,
     "functions() -> [(addr, kind, inclusive, self)]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tree_getset[] = {
    {"node_count", (getter)Tree_node_count, NULL, "number of nodes, the root included", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Tree_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vmprof._core.Tree",
    .tp_basicsize = sizeof(TreeObject),
    .tp_dealloc = (destructor)Tree_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The call tree of a Profile (held in C); see Profile.tree().",
    .tp_methods = Tree_methods,
    .tp_getset = Tree_getset,
};

static PyMethodDef reader_functions[] = {
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
    };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
        if (PyModule_AddIntConstant(module, consts[i].name, consts[i].value) < 0)
            return -1;
    return 0;
}

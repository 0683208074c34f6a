/*
 * module_jitlog.c - vmprof._core's JIT log type, JitLog: a thin view over
 * vjl_forest.h and vjl_query.h for the `jitlog` package.
 *
 * A JitLog is one object however large the log; ops, merge points and the
 * rest become tuples only when a trace's stage is asked for, so reading a
 * 100 MB log costs the C decoder's time plus what the caller looks at.
 * Reading and selecting release the GIL: the C library calls no Python.
 */
#include "module.h"

#include "vjl_encode.h"
#include "vjl_forest.h"
#include "vjl_query.h"

typedef struct {
    PyObject_HEAD
    vjl_forest *f;
} JitLogObject;

static PyTypeObject JitLog_Type;

static PyObject *wrap_forest(vjl_forest *f, const vmp_error *err)
{
    if (!f) {
        PyErr_SetString(vmp_module_error, err->message);
        return NULL;
    }
    JitLogObject *o = PyObject_New(JitLogObject, &JitLog_Type);
    if (!o) {
        vjl_forest_free(f);
        return NULL;
    }
    o->f = f;
    return (PyObject *)o;
}

static void JitLog_dealloc(JitLogObject *o)
{
    vjl_forest_free(o->f);
    PyObject_Free(o);
}

static PyObject *jitlog_read_file(PyObject *self, PyObject *arg)
{
    PyObject *path_obj = NULL;
    (void)self;
    if (!PyUnicode_FSConverter(arg, &path_obj))
        return NULL;
    vmp_error err;
    vjl_forest *f;
    const char *path = PyBytes_AS_STRING(path_obj);
    Py_BEGIN_ALLOW_THREADS
    f = vjl_forest_read_file(path, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    return wrap_forest(f, &err);
}

static PyObject *jitlog_read_bytes(PyObject *self, PyObject *arg)
{
    Py_buffer buf;
    (void)self;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    vmp_error err;
    vjl_forest *f;
    Py_BEGIN_ALLOW_THREADS
    f = vjl_forest_read_memory(buf.buf, (size_t)buf.len, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return wrap_forest(f, &err);
}

/* ---- values ----------------------------------------------------------------- */

static PyObject *none(void) /* Py_NewRef(Py_None) before 3.10 */
{
    Py_INCREF(Py_None);
    return Py_None;
}

static PyObject *text(const vjl_forest *f, vjl_str s)
{
    return vmp_module_text(vjl_str_ptr(f, s), s.len);
}

static PyObject *index_or_none(uint32_t i)
{
    if (i == VJL_NONE)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(i);
}

static PyObject *merge_point_value(const vjl_forest *f, const vjl_merge_point *mp, int slot)
{
    const vjl_value *v = &mp->value[slot];
    if (mp->kind[slot] == 'i')
        return PyLong_FromUnsignedLongLong(v->u.num);
    if (!v->u.s.prefix.len)
        return text(f, v->u.s.str);
    size_t n = (size_t)v->u.s.prefix.len + v->u.s.str.len;
    char *buf = PyMem_Malloc(n ? n : 1);
    if (!buf)
        return PyErr_NoMemory();
    memcpy(buf, vjl_str_ptr(f, v->u.s.prefix), v->u.s.prefix.len);
    memcpy(buf + v->u.s.prefix.len, vjl_str_ptr(f, v->u.s.str), v->u.s.str.len);
    PyObject *r = vmp_module_text(buf, n);
    PyMem_Free(buf);
    return r;
}

/* ---- JitLog methods ----------------------------------------------------- */

static int trace_index(JitLogObject *o, PyObject *arg, size_t *out)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || (size_t)i >= vjl_forest_trace_count(o->f)) {
        PyErr_Format(PyExc_IndexError, "trace index %zd out of range", i);
        return -1;
    }
    *out = (size_t)i;
    return 0;
}

static int stage_arg(const char *name, int *stage)
{
    static const char *const names[VJL_STAGES] = {"noopt", "opt", "asm"};
    for (int s = 0; s < VJL_STAGES; s++)
        if (strcmp(name, names[s]) == 0) {
            *stage = s;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "no stage '%.50s' (the stages are noopt, opt and asm)", name);
    return -1;
}

static PyObject *JitLog_trace(JitLogObject *o, PyObject *arg)
{
    size_t i;
    if (trace_index(o, arg, &i) < 0)
        return NULL;
    const vjl_trace *t = vjl_forest_trace(o->f, i);
    PyObject *addrs;
    if (t->has_addr)
        addrs = Py_BuildValue("(KK)", (unsigned long long)t->addr_start,
                              (unsigned long long)t->addr_end);
    else
        addrs = Py_BuildValue("(ii)", -1, -1);
    return Py_BuildValue(
        "{s:K,s:s,s:N,s:K,s:N,s:K,s:N,s:N,s:K,s:N,s:O,s:(OOO),s:(nnn),s:(nnn)}", "id", (unsigned long long)t->id,
        "type", t->is_bridge ? "bridge" : "loop", "jd_name",
        vjl_forest_version(o->f) >= 2 ? text(o->f, t->jd_name) : none(),
        "start_number", (unsigned long long)t->start_number, "addrs", addrs, "entry_count",
        (unsigned long long)t->entry_count, "parent", index_or_none(t->parent), "parent_op",
        index_or_none(t->parent_op), "stitched_descr", (unsigned long long)t->stitched_descr,
        "inputargs", text(o->f, t->inputargs), "aborted", t->aborted ? Py_True : Py_False,
        "stages", t->stage[0].present ? Py_True : Py_False,
        t->stage[1].present ? Py_True : Py_False, t->stage[2].present ? Py_True : Py_False,
        "op_counts", (Py_ssize_t)t->stage[0].n_ops, (Py_ssize_t)t->stage[1].n_ops,
        (Py_ssize_t)t->stage[2].n_ops, "merge_point_counts", (Py_ssize_t)t->stage[0].n_mps,
        (Py_ssize_t)t->stage[1].n_mps, (Py_ssize_t)t->stage[2].n_mps);
}

static PyObject *op_tuple(const vjl_forest *f, const vjl_op *op, int with_failargs)
{
    vjl_op_parts parts;
    vjl_op_get(f, op, &parts);
    PyObject *code;
    if (op->asm_record)
        code = Py_BuildValue("(Iy#)", (unsigned)parts.code_offset, vjl_str_ptr(f, parts.code),
                             (Py_ssize_t)parts.code.len);
    else
        code = none();
    return Py_BuildValue("(INNNNNK)", (unsigned)op->opnum, text(f, parts.args),
                         with_failargs ? text(f, parts.failargs) : none(),
                         op->has_descr ? PyLong_FromUnsignedLongLong(parts.descr) : none(),
                         code, index_or_none(vjl_forest_bridge_of(f, parts.descr)),
                         (unsigned long long)vjl_forest_descr_count(f, parts.descr));
}

/* The stage a method's (trace index, stage name) arguments name, or NULL. */
typedef struct stage_ctx {
    const vjl_forest *f;
    const vjl_stage *st;
} stage_ctx;

static int stage_of(JitLogObject *o, PyObject *args, stage_ctx *ctx)
{
    PyObject *index;
    const char *name;
    size_t i;
    int s;
    if (!PyArg_ParseTuple(args, "Os", &index, &name) || trace_index(o, index, &i) < 0 ||
        stage_arg(name, &s) < 0)
        return -1;
    ctx->f = o->f;
    ctx->st = &vjl_forest_trace(o->f, i)->stage[s];
    return 0;
}

static PyObject *op_item(const void *ctx, size_t k)
{
    const stage_ctx *c = ctx;
    return op_tuple(c->f, &c->st->ops[k], vjl_forest_version(c->f) >= 2);
}

static PyObject *JitLog_ops(JitLogObject *o, PyObject *args)
{
    stage_ctx ctx;
    if (stage_of(o, args, &ctx) < 0)
        return NULL;
    return vmp_module_list_of(ctx.st->n_ops, op_item, &ctx);
}

static PyObject *merge_point_tuple(const vjl_forest *f, const vjl_merge_point *mp)
{
    PyObject *values = PyDict_New();
    if (!values)
        return NULL;
    for (int k = 0; k < VJL_MP_KINDS; k++) {
        if (!mp->kind[k])
            continue;
        if (vmp_module_dict_set_new(values, PyLong_FromLong(1L << k),
                                    merge_point_value(f, mp, k)) < 0) {
            Py_DECREF(values);
            return NULL;
        }
    }
    return Py_BuildValue("(IN)", mp->op_index, values);
}

static PyObject *merge_point_item(const void *ctx, size_t k)
{
    const stage_ctx *c = ctx;
    return merge_point_tuple(c->f, &c->st->mps[k]);
}

static PyObject *JitLog_merge_points(JitLogObject *o, PyObject *args)
{
    stage_ctx ctx;
    if (stage_of(o, args, &ctx) < 0)
        return NULL;
    return vmp_module_list_of(ctx.st->n_mps, merge_point_item, &ctx);
}

/* Every merge point's (file, line) in every trace: what an upload needs to
 * add the source lines of the traced functions. */
static PyObject *JitLog_merge_point_lines(JitLogObject *o, PyObject *noargs)
{
    (void)noargs;
    PyObject *set = PySet_New(NULL);
    if (!set)
        return NULL;
    const int file = 0, line = 1; /* slots of VJL_MP_FILENAME, VJL_MP_LINENO */
    for (size_t i = 0; i < vjl_forest_trace_count(o->f); i++) {
        const vjl_trace *t = vjl_forest_trace(o->f, i);
        for (int s = 0; s < VJL_STAGES; s++)
            for (size_t k = 0; k < t->stage[s].n_mps; k++) {
                const vjl_merge_point *mp = &t->stage[s].mps[k];
                if (mp->kind[file] != 's' || mp->kind[line] != 'i')
                    continue;
                PyObject *pair = Py_BuildValue("(NK)", merge_point_value(o->f, mp, file),
                                               (unsigned long long)mp->value[line].u.num);
                if (!pair || PySet_Add(set, pair) < 0) {
                    Py_XDECREF(pair);
                    Py_DECREF(set);
                    return NULL;
                }
                Py_DECREF(pair);
            }
    }
    return set;
}

static PyObject *JitLog_resops(JitLogObject *o, PyObject *noargs)
{
    (void)noargs;
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (size_t i = 0; i < vjl_forest_resop_count(o->f); i++) {
        unsigned opnum;
        vjl_str name;
        vjl_forest_resop_at(o->f, i, &opnum, &name);
        if (vmp_module_dict_set_new(d, PyLong_FromUnsignedLong(opnum), text(o->f, name)) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

static PyObject *stitch_item(const void *ctx, size_t i)
{
    size_t n;
    const vjl_stitch *s = &vjl_forest_stitches(ctx, &n)[i];
    return Py_BuildValue("(KKN)", (unsigned long long)s->descr, (unsigned long long)s->addr,
                         index_or_none(s->bridge));
}

static PyObject *JitLog_stitches(JitLogObject *o, PyObject *noargs)
{
    (void)noargs;
    size_t n;
    vjl_forest_stitches(o->f, &n);
    return vmp_module_list_of(n, stitch_item, o->f);
}

static PyObject *counter_item(const void *ctx, size_t i)
{
    size_t n;
    const vjl_counter *c = &vjl_forest_counters(ctx, &n)[i];
    return Py_BuildValue("(KCKN)", (unsigned long long)c->addr, c->type,
                         (unsigned long long)c->count, index_or_none(c->trace));
}

static PyObject *JitLog_counters(JitLogObject *o, PyObject *noargs)
{
    (void)noargs;
    size_t n;
    vjl_forest_counters(o->f, &n);
    return vmp_module_list_of(n, counter_item, o->f);
}

static PyObject *source_line_item(const void *ctx, size_t i)
{
    size_t n;
    const vjl_source_line *l = &vjl_forest_source_lines(ctx, &n)[i];
    return Py_BuildValue("(NIIN)", text(ctx, l->file), (unsigned)l->line, (unsigned)l->indent,
                         text(ctx, l->text));
}

static PyObject *JitLog_source_lines(JitLogObject *o, PyObject *noargs)
{
    (void)noargs;
    size_t n;
    vjl_forest_source_lines(o->f, &n);
    return vmp_module_list_of(n, source_line_item, o->f);
}

static vjl_query *parse_query(PyObject *arg)
{
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!s)
        return NULL;
    vmp_error err;
    vjl_query *q = vjl_query_parse(s, (size_t)len, &err);
    if (!q)
        PyErr_SetString(PyExc_ValueError, err.message);
    return q;
}

static PyObject *JitLog_select(JitLogObject *o, PyObject *arg)
{
    vjl_query *q = parse_query(arg);
    if (!q)
        return NULL;
    size_t total = vjl_forest_trace_count(o->f), n;
    uint32_t *out = PyMem_RawMalloc((total ? total : 1) * sizeof *out);
    if (!out) {
        vjl_query_free(q);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    n = vjl_query_select(q, o->f, out);
    Py_END_ALLOW_THREADS
    vjl_query_free(q);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(out[i]);
        if (!v) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    PyMem_RawFree(out);
    return list;
}

static PyObject *JitLog_get_version(JitLogObject *o, void *c)
{
    (void)c;
    return PyLong_FromLong(vjl_forest_version(o->f));
}

static PyObject *JitLog_get_word_size(JitLogObject *o, void *c)
{
    (void)c;
    return PyLong_FromLong(vjl_forest_word_size(o->f));
}

static PyObject *JitLog_get_machine(JitLogObject *o, void *c)
{
    (void)c;
    return text(o->f, vjl_forest_machine(o->f));
}

static PyObject *JitLog_get_warning(JitLogObject *o, void *c)
{
    (void)c;
    const vmp_error *w = vjl_forest_warning(o->f);
    if (!w)
        Py_RETURN_NONE;
    return Py_BuildValue("(sL)", w->message, (long long)w->offset);
}

static PyObject *JitLog_get_trace_count(JitLogObject *o, void *c)
{
    (void)c;
    return PyLong_FromSize_t(vjl_forest_trace_count(o->f));
}

static PyGetSetDef JitLog_getset[] = {
    {"version", (getter)JitLog_get_version, NULL, "the log's format version (1-4)", NULL},
    {"word_size", (getter)JitLog_get_word_size, NULL, "4 or 8", NULL},
    {"machine", (getter)JitLog_get_machine, NULL, "the machine PyPy ran on, e.g. x86_64", NULL},
    {"warning", (getter)JitLog_get_warning, NULL,
     "None, or (message, byte offset) where a cut or damaged log stopped being read", NULL},
    {"trace_count", (getter)JitLog_get_trace_count, NULL, "number of traces", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef JitLog_methods[] = {
    {"trace", (PyCFunction)JitLog_trace, METH_O,
     "trace(i) -> dict: id, type, jd_name, start_number, addrs, entry_count, parent, "
     "parent_op, stitched_descr, inputargs, aborted, stages (noopt, opt, asm present), "
     "op_counts, merge_point_counts (per stage)"},
    {"ops", (PyCFunction)JitLog_ops, METH_VARARGS,
     "ops(i, stage) -> [(opnum, args text, failargs text or None, descr number or None, "
     "(code offset, code bytes) or None, bridge trace index or None, counter)]"},
    {"merge_points", (PyCFunction)JitLog_merge_points, METH_VARARGS,
     "merge_points(i, stage) -> [(ops before it, {semantic type: value})]"},
    {"merge_point_lines", (PyCFunction)JitLog_merge_point_lines, METH_NOARGS,
     "merge_point_lines() -> {(file, line)} of every merge point"},
    {"resops", (PyCFunction)JitLog_resops, METH_NOARGS, "resops() -> {opnum: name}"},
    {"stitches", (PyCFunction)JitLog_stitches, METH_NOARGS,
     "stitches() -> [(guard descr, bridge address, bridge trace index or None)]"},
    {"counters", (PyCFunction)JitLog_counters, METH_NOARGS,
     "counters() -> [(address, type 'e'/'b'/'l', count, trace index or None)]"},
    {"source_lines", (PyCFunction)JitLog_source_lines, METH_NOARGS,
     "source_lines() -> [(file, line, indent, text)] of the SOURCE_CODE records"},
    {"select", (PyCFunction)JitLog_select, METH_O,
     "select(query) -> indices of the selected traces; ValueError naming the column on a "
     "syntax error"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject JitLog_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vmprof._core.JitLog",
    .tp_basicsize = sizeof(JitLogObject),
    .tp_dealloc = (destructor)JitLog_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A PyPy JIT log read into a trace forest (jitlog_read_file / jitlog_read_bytes).",
    .tp_methods = JitLog_methods,
    .tp_getset = JitLog_getset,
};

/* ---- module functions ------------------------------------------------------- */

static PyObject *jitlog_check_query(PyObject *self, PyObject *arg)
{
    (void)self;
    vjl_query *q = parse_query(arg);
    if (!q)
        return NULL;
    vjl_query_free(q);
    Py_RETURN_NONE;
}

/* source_code_record(file, [(line, indent, text)]) -> the SOURCE_CODE bytes */
static PyObject *jitlog_source_code_record(PyObject *self, PyObject *args)
{
    const char *file;
    Py_ssize_t file_len;
    PyObject *seq;
    (void)self;
    if (!PyArg_ParseTuple(args, "s#O", &file, &file_len, &seq))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "source_code_record: lines must be a sequence");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > 65535) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "a SOURCE_CODE record holds at most 65535 lines");
        return NULL;
    }
    vjl_line_in *lines = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *lines);
    if (!lines) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned line, indent;
        const char *s;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "IIs#", &line, &indent, &s, &len))
            goto done;
        if (line > 65535 || indent > 255) {
            PyErr_Format(PyExc_ValueError, "line %u or indent %u out of range (u16, u8)", line,
                         indent);
            goto done;
        }
        lines[i] = (vjl_line_in){line, indent, s, (size_t)len};
    }
    vjl_writer w;
    vjl_writer_init(&w, 8);
    vjl_put_source_code(&w, file, (size_t)file_len, lines, (size_t)n);
    result = w.failed ? PyErr_NoMemory()
                      : PyBytes_FromStringAndSize((const char *)w.buf, (Py_ssize_t)w.len);
    vjl_writer_free(&w);
done:
    PyMem_Free(lines);
    Py_DECREF(fast);
    return result;
}

static PyMethodDef jitlog_functions[] = {
    {"jitlog_read_file", (PyCFunction)jitlog_read_file, METH_O,
     "jitlog_read_file(path) -> JitLog (plain or gzip); VMProfError if it is no JIT log"},
    {"jitlog_read_bytes", (PyCFunction)jitlog_read_bytes, METH_O,
     "jitlog_read_bytes(data) -> JitLog"},
    {"jitlog_check_query", (PyCFunction)jitlog_check_query, METH_O,
     "jitlog_check_query(text): ValueError naming the column if it does not parse"},
    {"jitlog_source_code_record", (PyCFunction)jitlog_source_code_record, METH_VARARGS,
     "jitlog_source_code_record(file, [(line, indent, text)]) -> bytes of a SOURCE_CODE "
     "record"},
    {NULL, NULL, 0, NULL},
};

int vmp_module_init_jitlog(PyObject *module)
{
    if (PyType_Ready(&JitLog_Type) < 0)
        return -1;
    Py_INCREF(&JitLog_Type);
    if (PyModule_AddObject(module, "JitLog", (PyObject *)&JitLog_Type) < 0) {
        Py_DECREF(&JitLog_Type);
        return -1;
    }
    return PyModule_AddFunctions(module, jitlog_functions);
}

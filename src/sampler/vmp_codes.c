/*
 * vmp_codes.c - the set of sampled code objects and their names (contract in
 * vmp_codes.h).
 *
 * The set is an open-addressing table of addresses in anonymous memory (pages
 * are touched only as addresses arrive).  Slots go from empty to an address
 * by compare-and-swap and from an address to a tombstone when the object dies;
 * tombstones are never reused, so a lookup never misses an address that a
 * concurrent insert placed further along its probe chain.
 */
#include "vmp_codes.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "vmp_format.h"

#define SET_BITS 20
#define SET_SIZE ((size_t)1 << SET_BITS)
#define SET_MASK (SET_SIZE - 1)
#define MAX_PROBES 128
#define TOMBSTONE ((uintptr_t)1)

static _Atomic uintptr_t *set;
static _Atomic(vmp_codes_name_fn) on_death;
static _Atomic uint64_t untracked;
static int hook_installed;

static inline size_t slot_of(uintptr_t code)
{
    return (size_t)(((uint64_t)code >> 4) * 0x9E3779B97F4A7C15ull >> (64 - SET_BITS));
}

void vmp_codes_note(uintptr_t code)
{
    _Atomic uintptr_t *s = set;
    if (!s)
        return;
    /* Look along the whole chain first (the address may sit past a
     * tombstone), then take the first free or tombstoned slot; every
     * concurrent inserter of the same address aims at that same slot, so one
     * wins and the others find it on their retry. */
    for (int attempt = 0; attempt < 4; attempt++) {
        size_t i = slot_of(code), reuse = SIZE_MAX;
        int probe;
        for (probe = 0; probe < MAX_PROBES; probe++, i = (i + 1) & SET_MASK) {
            uintptr_t v = atomic_load_explicit(&s[i], memory_order_acquire);
            if (v == code)
                return;
            if (v == TOMBSTONE && reuse == SIZE_MAX)
                reuse = i;
            if (v == 0) {
                if (reuse == SIZE_MAX)
                    reuse = i;
                break;
            }
        }
        if (reuse == SIZE_MAX)
            break;
        uintptr_t seen = atomic_load_explicit(&s[reuse], memory_order_relaxed);
        if ((seen == 0 || seen == TOMBSTONE) &&
            atomic_compare_exchange_strong_explicit(&s[reuse], &seen, code, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return;
    }
    atomic_fetch_add_explicit(&untracked, 1, memory_order_relaxed);
}

/* The slot holding code, or NULL when the set does not have it. */
static _Atomic uintptr_t *slot_holding(uintptr_t code)
{
    _Atomic uintptr_t *s = set;
    if (!s)
        return NULL;
    size_t i = slot_of(code);
    for (int probe = 0; probe < MAX_PROBES; probe++, i = (i + 1) & SET_MASK) {
        uintptr_t v = atomic_load_explicit(&s[i], memory_order_acquire);
        if (v == 0)
            return NULL;
        if (v == code)
            return &s[i];
    }
    return NULL;
}

/* Removes code from the set; returns 1 when it was there. */
static int forget(uintptr_t code)
{
    _Atomic uintptr_t *slot = slot_holding(code);
    uintptr_t expected = code;
    return slot && atomic_compare_exchange_strong(slot, &expected, TOMBSTONE);
}

static int is_tracked(uintptr_t code)
{
    return slot_holding(code) != NULL;
}

/* The UTF-8 text of a str without raising: ASCII strings are read in place;
 * others are encoded (which may cache the encoding) with any exception that
 * was pending kept as it was. */
static const char *utf8_of(PyObject *s, Py_ssize_t *len)
{
    if (!s || !PyUnicode_Check(s))
        goto unknown;
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        *len = PyUnicode_GET_LENGTH(s);
        return (const char *)PyUnicode_DATA(s);
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *pending = PyErr_GetRaisedException();
    const char *text = PyUnicode_AsUTF8AndSize(s, len);
    if (!text)
        PyErr_Clear();
    PyErr_SetRaisedException(pending);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    const char *text = PyUnicode_AsUTF8AndSize(s, len);
    if (!text)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
#endif
    if (text)
        return text;
unknown:
    *len = 1;
    return "?";
}

size_t vmp_codes_format_name(PyCodeObject *code, char *buf, size_t cap)
{
    Py_ssize_t nlen, flen;
    const char *name = utf8_of(code->co_name, &nlen);
    const char *file = utf8_of(code->co_filename, &flen);
    if (nlen > VMP_MAX_FUNC_NAME)
        nlen = VMP_MAX_FUNC_NAME;
    if (cap > VMP_MAX_NAME + 1)
        cap = VMP_MAX_NAME + 1;
    int n = snprintf(buf, cap, "py:%.*s:%d:%.*s", (int)nlen, name, code->co_firstlineno, (int)flen, file);
    if (n < 0)
        n = 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

static void code_died(PyObject *obj)
{
    vmp_codes_name_fn cb = atomic_load(&on_death);
    uintptr_t code = (uintptr_t)obj;
    if (!cb || !is_tracked(code))
        return;
    char name[VMP_MAX_NAME + 1];
    size_t len = vmp_codes_format_name((PyCodeObject *)obj, name, sizeof name);
    /* Name first, then retire: every sample holding the object was claimed
     * before this point (the object had no references left), so the name
     * lands after all of them in the stream. */
    cb(code, name, len, 1);
    forget(code);
}

#if PY_VERSION_HEX >= 0x030C0000
static int code_watcher(PyCodeEvent event, PyCodeObject *co)
{
    if (event == PY_CODE_EVENT_DESTROY)
        code_died((PyObject *)co);
    return 0;
}

static int install_hook(void)
{
    return PyCode_AddWatcher(code_watcher) < 0 ? -1 : 0;
}
#else
static destructor original_code_dealloc;

static void code_dealloc_hook(PyObject *obj)
{
    code_died(obj);
    original_code_dealloc(obj);
}

static int install_hook(void)
{
    original_code_dealloc = PyCode_Type.tp_dealloc;
    PyCode_Type.tp_dealloc = code_dealloc_hook;
    return 0;
}
#endif

static _Atomic uintptr_t *map_set(void)
{
    void *p = mmap(NULL, SET_SIZE * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int vmp_codes_start(vmp_codes_name_fn died)
{
    /* The hook stays for the life of the process (another extension may have
     * wrapped the deallocator after us); it does nothing while not started. */
    if (!hook_installed) {
        if (install_hook() < 0)
            return -1;
        hook_installed = 1;
    }
    /* The set is mapped once and never unmapped: a late signal handler may
     * still note an address after a stop, and must find memory there. */
    if (!set && !(set = map_set())) {
        PyErr_SetString(PyExc_MemoryError, "vmprof: no memory for the code-object set");
        return -1;
    }
    atomic_store(&untracked, 0);
    atomic_store(&on_death, died);
    return 0;
}

void vmp_codes_abandon(void)
{
    atomic_store(&on_death, NULL);
    if (set)
        madvise((void *)set, SET_SIZE * sizeof(uintptr_t), MADV_DONTNEED); /* empty again */
}

void vmp_codes_stop(void)
{
    vmp_codes_abandon();
}

/* Reads everything formatting will read, with no Python call, and says
 * whether obj looks like a live code object with str name and file. */
typedef struct probe {
    PyObject *obj;
    int ok;
} probe;

static int is_str(PyObject *s)
{
    return s && ((uintptr_t)s & (sizeof(void *) - 1)) == 0 && Py_TYPE(s) == &PyUnicode_Type;
}

static void probe_code(void *arg)
{
    probe *p = arg;
    PyObject *obj = p->obj;
    if (Py_TYPE(obj) != &PyCode_Type || Py_REFCNT(obj) <= 0)
        return;
    PyCodeObject *code = (PyCodeObject *)obj;
    PyObject *strs[2] = {code->co_name, code->co_filename};
    volatile unsigned char sink = 0;
    for (int k = 0; k < 2; k++) {
        if (!is_str(strs[k]))
            return;
        if (PyUnicode_IS_COMPACT_ASCII(strs[k])) {
            const unsigned char *d = PyUnicode_DATA(strs[k]);
            for (Py_ssize_t i = 0, n = PyUnicode_GET_LENGTH(strs[k]); i < n && i < VMP_MAX_NAME; i++)
                sink ^= d[i];
        }
    }
    (void)sink;
    p->ok = 1;
}

void vmp_codes_name_live(vmp_codes_name_fn emit, vmp_guard_fn guard)
{
    _Atomic uintptr_t *s = set;
    if (!s)
        return;
    char name[VMP_MAX_NAME + 1];
    for (size_t i = 0; i < SET_SIZE; i++) {
        uintptr_t v = atomic_load_explicit(&s[i], memory_order_acquire);
        if (v == 0 || v == TOMBSTONE)
            continue;
        probe p = {(PyObject *)v, 0};
        if (guard(probe_code, &p) < 0 || !p.ok)
            continue;
        size_t len = vmp_codes_format_name((PyCodeObject *)v, name, sizeof name);
        emit(v, name, len, 0);
    }
}

uint64_t vmp_codes_untracked(void)
{
    return atomic_load(&untracked);
}

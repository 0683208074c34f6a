/*
 * vmp_codes.c - the set of sampled code objects and their names (contract in
 * vmp_codes.h).
 *
 * The set is an open-addressing table of addresses in anonymous memory (pages
 * are touched only as addresses arrive).  Slots go from empty to an address
 * by compare-and-swap and from an address to a tombstone when the object dies;
 * tombstones are never reused, so a lookup never misses an address that a
 * concurrent insert placed further along its probe chain.
 *
 * The set spans 8 MiB, of which a run touches a few pages; each insert marks
 * its page in `touched` first, so that naming the live objects at the end
 * reads those pages only (reading all of them faulted in 2,048 zero pages
 * and scanned 8 MiB: most of disable()'s CPU time in Python-only mode).
 */
#include "vmp_codes.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "vmp_format.h"
#include "vmp_name.h"

#define SET_BITS 20
#define SET_SIZE ((size_t)1 << SET_BITS)
#define SET_MASK (SET_SIZE - 1)
#define MAX_PROBES 128
#define TOMBSTONE ((uintptr_t)1)

static _Atomic uintptr_t *set;
#define PAGE_SLOTS ((size_t)4096 / sizeof(uintptr_t))
#define SET_PAGES (SET_SIZE / PAGE_SLOTS)
static _Atomic uint64_t touched[SET_PAGES / 64]; /* a bit per page of `set` that may hold an address */
static _Atomic(vmp_codes_name_fn) on_death;
static _Atomic uint64_t untracked;
static int hook_installed;
/* Deaths of tracked objects, counted per bucket of addresses as each
 * begins, before its name is pushed (vmp_codes_deaths): the writer, which
 * names objects during the run without the GIL, names an address only
 * while it has settled every death counted at its bucket, and reads none
 * across a death there.  Reset by vmp_codes_start, under the GIL. */
static _Atomic uint64_t deaths[VMP_CODES_DEATH_BUCKETS];

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
        size_t page = reuse / PAGE_SLOTS; /* marked before the address is there */
        if (!(atomic_load_explicit(&touched[page / 64], memory_order_relaxed) & (1ull << (page % 64))))
            atomic_fetch_or_explicit(&touched[page / 64], 1ull << (page % 64), memory_order_release);
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

/* Appends to out at most max bytes of str s in UTF-8 (whole characters; a
 * lone surrogate becomes U+FFFD), reading its characters only: no Python
 * call, no allocation, nothing written into the object.  So a string that
 * may be dead can be read under the fault guard, and a live one is left as
 * it was (PyUnicode_AsUTF8AndSize would have cached an encoding in it, or
 * written into freed memory).  "?" for what is not a ready str. */
static size_t append_text(PyObject *s, char *out, size_t max)
{
    if (!s || !PyUnicode_Check(s))
        goto unknown;
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(s))
        goto unknown;
#endif
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    size_t o = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        unsigned char e[4];
        size_t len;
        if (c < 0x80) {
            e[0] = (unsigned char)c;
            len = 1;
        } else if (c < 0x800) {
            e[0] = (unsigned char)(0xC0 | (c >> 6));
            e[1] = (unsigned char)(0x80 | (c & 0x3F));
            len = 2;
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF)
                c = 0xFFFD;
            e[0] = (unsigned char)(0xE0 | (c >> 12));
            e[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            e[2] = (unsigned char)(0x80 | (c & 0x3F));
            len = 3;
        } else {
            e[0] = (unsigned char)(0xF0 | (c >> 18));
            e[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            e[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            e[3] = (unsigned char)(0x80 | (c & 0x3F));
            len = 4;
        }
        if (o + len > max)
            break;
        memcpy(out + o, e, len);
        o += len;
    }
    return o;
unknown:
    if (max < 1)
        return 0;
    out[0] = '?';
    return 1;
}

size_t vmp_codes_format_name(PyCodeObject *code, char *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    if (cap > VMP_MAX_NAME + 1)
        cap = VMP_MAX_NAME + 1;
    /* the parts as UTF-8, then the name grammar, which is libvmprof's
     * (vmp_name.h) */
    char func[VMP_MAX_FUNC_NAME], file[VMP_MAX_NAME];
    size_t func_len = append_text(code->co_name, func, sizeof func);
    size_t file_len = append_text(code->co_filename, file, sizeof file);
    size_t n = vmp_name_write(buf, cap, VMP_NAME_PYTHON, func, func_len, code->co_firstlineno,
                              file, file_len);
    return n < cap ? n : cap - 1;
}

unsigned vmp_codes_death_bucket(uintptr_t code)
{
    return (unsigned)(slot_of(code) >> (SET_BITS - VMP_CODES_DEATH_BITS));
}

uint64_t vmp_codes_deaths(unsigned bucket)
{
    return atomic_load(&deaths[bucket]);
}

static void code_died(PyObject *obj)
{
    vmp_codes_name_fn cb = atomic_load(&on_death);
    uintptr_t code = (uintptr_t)obj;
    if (!cb || !is_tracked(code))
        return;
    /* Counted before anything else (its memory is freed only after this
     * returns): a writer reading the object without the GIL sees the count
     * move before it could read freed or reused memory (a seq_cst
     * read-modify-write, then the stores of the free; vmp_codes_name_now). */
    atomic_fetch_add(&deaths[vmp_codes_death_bucket(code)], 1);
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
    for (size_t b = 0; b < VMP_CODES_DEATH_BUCKETS; b++)
        atomic_store(&deaths[b], 0);
    atomic_store(&on_death, died);
    return 0;
}

void vmp_codes_abandon(void)
{
    atomic_store(&on_death, NULL);
    if (set)
        madvise((void *)set, SET_SIZE * sizeof(uintptr_t), MADV_DONTNEED); /* empty again */
    for (size_t w = 0; w < SET_PAGES / 64; w++)
        atomic_store(&touched[w], 0);
}

void vmp_codes_stop(void)
{
    vmp_codes_abandon();
}

/* Formats the name of what the set holds at an address, under the fault
 * guard: the address was noted from a frame that may have been torn down,
 * so it may no longer hold a code object, and its strings may be dead. */
typedef struct naming {
    PyObject *obj;
    char *buf;
    size_t len;
    int ok;
    int strict; /* both strings must be ready str (read without the GIL) */
} naming;

static int ready_str(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    return s && PyUnicode_Check(s) && PyUnicode_IS_READY(s);
#else
    return s && PyUnicode_Check(s);
#endif
}

static void name_if_code(void *arg)
{
    naming *n = arg;
    PyObject *obj = n->obj;
    if (((uintptr_t)obj & (sizeof(void *) - 1)) || Py_TYPE(obj) != &PyCode_Type || Py_REFCNT(obj) <= 0)
        return;
    if (n->strict && (!ready_str(((PyCodeObject *)obj)->co_name) || !ready_str(((PyCodeObject *)obj)->co_filename)))
        return;
    n->len = vmp_codes_format_name((PyCodeObject *)obj, n->buf, VMP_MAX_NAME + 1);
    n->ok = 1;
}

void vmp_codes_name_live(vmp_codes_name_fn emit, vmp_guard_fn guard)
{
    _Atomic uintptr_t *s = set;
    if (!s)
        return;
    char name[VMP_MAX_NAME + 1];
    for (size_t i = 0; i < SET_SIZE; i++) {
        size_t page = i / PAGE_SLOTS;
        if (i % PAGE_SLOTS == 0 && !(atomic_load_explicit(&touched[page / 64], memory_order_acquire) & (1ull << (page % 64)))) {
            i += PAGE_SLOTS - 1; /* nothing was ever put there */
            continue;
        }
        uintptr_t v = atomic_load_explicit(&s[i], memory_order_acquire);
        if (v == 0 || v == TOMBSTONE)
            continue;
        naming n = {(PyObject *)v, name, 0, 0, 0};
        if (guard(name_if_code, &n) < 0 || !n.ok)
            continue;
        emit(v, name, n.len, 0);
    }
}

uint64_t vmp_codes_untracked(void)
{
    return atomic_load(&untracked);
}

size_t vmp_codes_name_now(uintptr_t code, char *buf, vmp_guard_fn guard)
{
    /* Read twice, and taken only when both readings agree: an object being
     * made at this address meanwhile (no death tells of it; one noted from
     * a torn-down frame) may be half filled in.  The caller checks the
     * death count around this call (vmp_codes.h). */
    char again[VMP_MAX_NAME + 1];
    naming a = {(PyObject *)code, buf, 0, 0, 1}, b = {(PyObject *)code, again, 0, 0, 1};
    if (guard(name_if_code, &a) < 0 || !a.ok || guard(name_if_code, &b) < 0 || !b.ok || a.len != b.len ||
        memcmp(buf, again, a.len) != 0)
        return 0;
    return a.len;
}

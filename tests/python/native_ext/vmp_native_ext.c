/*
 * vmp_native_ext.c - a C extension the native-frame tests build and import:
 * it burns CPU in a named C function and calls a Python callback from C, so
 * that a profile must show C under Python and Python under C.
 *
 * The named functions are noinline so that they stay frames of their own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

__attribute__((noinline)) double vmp_ext_burn_loop(long n)
{
    volatile double x = 0;
    for (long i = 0; i < n; i++)
        x += (double)i * 0.5;
    return x;
}

static PyObject *burn(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    return PyFloat_FromDouble(vmp_ext_burn_loop(n));
}

/* A function with no unwind information at all (assembled here without
 * CFI directives, as hand-written assembly often is): a native walk
 * interrupted in it has no rule to step out with, and none will ever be
 * learned, so every sample taken there is cut (META samples_cut).  Aligned,
 * and padded after, so that no odd function start touches it (an odd start
 * is vmp_ext_odd_spin's test).  While a sample's native word was pc | 1, a
 * pc at an odd start read as the byte before it: the code before this one
 * once ended at an odd address, and every sample at the loop's first
 * instruction was named "+0x..." (the function's id with it); and the C
 * function after its ret (gcc -O1 aligns no function) began at an odd
 * address: a sample at that function's first byte read as this ret, was
 * named after this function and walked whole with the other's rule (1 run
 * of test_native.py in 6). */
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".globl vmp_ext_spin_without_cfi\n"
        ".type vmp_ext_spin_without_cfi, @function\n"
        "vmp_ext_spin_without_cfi:\n"
        "1:  sub $1, %rdi\n"
        "    jg 1b\n"
        "    ret\n"
        ".size vmp_ext_spin_without_cfi, .-vmp_ext_spin_without_cfi\n"
        ".p2align 4\n");
void vmp_ext_spin_without_cfi(long n);
#else
static void vmp_ext_spin_without_cfi(long n)
{
    vmp_ext_burn_loop(n);
}
#endif

/* Functions that start at odd addresses (hand-written assembly without
 * alignment: one byte of padding before each), with unwind information.
 * vmp_ext_odd_caller calls vmp_ext_odd_spin as its last instruction (a
 * call that does not return there, as a call of a noreturn function), and
 * vmp_ext_after_odd_caller starts at its return address: a caller's frame
 * must be named from its call (return address - 1), not after the function
 * that follows.  vmp_ext_odd_spin spins on its first byte (`loop`: rcx
 * times), so nearly every sample in it is at its odd start; then it drops
 * its caller's return address and returns to the caller's caller, for
 * vmp_ext_odd_caller has nothing after its call.  The caller's own call
 * ends at an even address: its frame's pc (return address - 1) is odd too.
 * vmp_ext_even_caller is the same caller at an even address: its call ends
 * at an odd one, its frame's pc is even, and vmp_ext_after_even_caller
 * starts at that pc + 1 (an id made of the pc | 1 would be that function's).
 * Hidden: called directly, not through the PLT. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".p2align 4\n"
        "    nop\n"
        ".globl vmp_ext_odd_spin\n"
        ".hidden vmp_ext_odd_spin\n"
        ".type vmp_ext_odd_spin, @function\n"
        "vmp_ext_odd_spin:\n"
        "    .cfi_startproc\n"
        "1:  loop 1b\n"
        "    add $8, %rsp\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size vmp_ext_odd_spin, .-vmp_ext_odd_spin\n"
        "    nop\n"
        ".globl vmp_ext_odd_caller\n"
        ".hidden vmp_ext_odd_caller\n"
        ".type vmp_ext_odd_caller, @function\n"
        "vmp_ext_odd_caller:\n"
        "    .cfi_startproc\n"
        "    mov %edi, %ecx\n"
        "    call vmp_ext_odd_spin\n"
        "    .cfi_endproc\n"
        ".size vmp_ext_odd_caller, .-vmp_ext_odd_caller\n"
        ".globl vmp_ext_after_odd_caller\n"
        ".hidden vmp_ext_after_odd_caller\n"
        ".type vmp_ext_after_odd_caller, @function\n"
        "vmp_ext_after_odd_caller:\n"
        "    .cfi_startproc\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size vmp_ext_after_odd_caller, .-vmp_ext_after_odd_caller\n"
        ".p2align 4\n"
        ".globl vmp_ext_even_caller\n"
        ".hidden vmp_ext_even_caller\n"
        ".type vmp_ext_even_caller, @function\n"
        "vmp_ext_even_caller:\n"
        "    .cfi_startproc\n"
        "    mov %edi, %ecx\n"
        "    call vmp_ext_odd_spin\n"
        "    .cfi_endproc\n"
        ".size vmp_ext_even_caller, .-vmp_ext_even_caller\n"
        ".globl vmp_ext_after_even_caller\n"
        ".hidden vmp_ext_after_even_caller\n"
        ".type vmp_ext_after_even_caller, @function\n"
        "vmp_ext_after_even_caller:\n"
        "    .cfi_startproc\n"
        "    ret\n"
        "    .cfi_endproc\n"
        ".size vmp_ext_after_even_caller, .-vmp_ext_after_even_caller\n"
        ".p2align 4\n");
__attribute__((visibility("hidden"))) void vmp_ext_odd_spin(void);
__attribute__((visibility("hidden"))) void vmp_ext_odd_caller(unsigned n);
__attribute__((visibility("hidden"))) void vmp_ext_after_odd_caller(void);
__attribute__((visibility("hidden"))) void vmp_ext_even_caller(unsigned n);
__attribute__((visibility("hidden"))) void vmp_ext_after_even_caller(void);
#endif

static PyObject *spin_at_odd_start(PyObject *self, PyObject *args)
{
    (void)self;
    long n;
    int even = 0;
    if (!PyArg_ParseTuple(args, "l|p", &n, &even))
        return NULL;
#if defined(__x86_64__)
    if (n < 1 || n > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "1 <= n < 2**31");
        return NULL;
    }
    if (even)
        vmp_ext_even_caller((unsigned)n);
    else
        vmp_ext_odd_caller((unsigned)n);
#else
    (void)even;
    vmp_ext_burn_loop(n);
#endif
    Py_RETURN_NONE;
}

/* Where the odd functions lie: (vmp_ext_odd_spin, vmp_ext_odd_caller,
 * vmp_ext_after_odd_caller, vmp_ext_even_caller, vmp_ext_after_even_caller),
 * or None where they are not built. */
static PyObject *odd_start_addresses(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
#if defined(__x86_64__)
    return Py_BuildValue("(KKKKK)", (unsigned long long)(uintptr_t)&vmp_ext_odd_spin,
                         (unsigned long long)(uintptr_t)&vmp_ext_odd_caller,
                         (unsigned long long)(uintptr_t)&vmp_ext_after_odd_caller,
                         (unsigned long long)(uintptr_t)&vmp_ext_even_caller,
                         (unsigned long long)(uintptr_t)&vmp_ext_after_even_caller);
#else
    Py_RETURN_NONE;
#endif
}

static PyObject *spin_without_cfi(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    vmp_ext_spin_without_cfi(n);
    Py_RETURN_NONE;
}

__attribute__((noinline)) PyObject *vmp_ext_call_back(PyObject *callback, long times)
{
    for (long i = 0; i < times; i++) {
        PyObject *r = PyObject_CallObject(callback, NULL);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *call_back(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *callback;
    long times;
    if (!PyArg_ParseTuple(args, "Ol", &callback, &times))
        return NULL;
    return vmp_ext_call_back(callback, times);
}

static PyMethodDef methods[] = {
    {"burn", burn, METH_O, "burn(n): spin n iterations in vmp_ext_burn_loop."},
    {"call_back", call_back, METH_VARARGS, "call_back(f, n): call f() n times from C."},
    {"spin_without_cfi", spin_without_cfi, METH_O,
     "spin_without_cfi(n): spin n iterations in a function without unwind information."},
    {"spin_at_odd_start", spin_at_odd_start, METH_VARARGS,
     "spin_at_odd_start(n, even=False): spin n iterations at the first byte of a function at an odd "
     "address, called from vmp_ext_odd_caller (or vmp_ext_even_caller)."},
    {"odd_start_addresses", odd_start_addresses, METH_NOARGS,
     "odd_start_addresses(): the addresses of the functions at odd addresses, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "vmp_native_ext", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_vmp_native_ext(void)
{
    return PyModule_Create(&module);
}

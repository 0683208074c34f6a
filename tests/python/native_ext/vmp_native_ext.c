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
 * as compilers align functions: a native frame's entry keeps the pc's bit 0
 * as its mark (pc | 1), so a pc at an odd function start reads as the byte
 * before it, which no function holds (the code before this one once ended
 * at an odd address: every sample at the loop's first instruction was named
 * "+0x..." and took the function's id with it).  Padded after, too: with
 * the next function's first byte right after its ret, a sample at the ret
 * (pc | 1: that byte) was walked with that function's unwind rule, whole
 * (1 run of test_native.py in 6). */
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "vmp_native_ext", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_vmp_native_ext(void)
{
    return PyModule_Create(&module);
}

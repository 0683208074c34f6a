/* module.c - creates vmprof._core and hands it to each binding file.
 *
 * Multi-phase initialisation (PEP 489), so that the module declares how it
 * may be used:
 *   - sub-interpreters: it may be imported in interpreters that share the
 *     main interpreter's GIL (the legacy kind), where reading, trees and
 *     exports work; the sampler refuses enable() there with a one-line reason
 *     (it samples the whole process and follows the main interpreter's code
 *     objects).  Interpreters with a GIL of their own are refused at import
 *     by CPython itself: the module's types and the sampler are process-wide.
 *   - free threading (3.13+): the module needs the GIL (Py_MOD_GIL_USED): the
 *     sampler's lifecycle and the code-object hooks rely on it, so a
 *     free-threaded interpreter turns the GIL on when it imports the module.
 * The exception type VMProfError is made once per process (like the static
 * types it sits beside) and each module object keeps a reference to it in
 * its state.
 */
#include "module.h"

PyObject *vmp_module_error;

typedef struct core_state {
    PyObject *error;
} core_state;

static int core_exec(PyObject *m)
{
    core_state *st = PyModule_GetState(m);
    if (!vmp_module_error) {
        vmp_module_error = PyErr_NewExceptionWithDoc(
            "vmprof.VMProfError", "A vmprof operation failed; the message says why and what to do.",
            PyExc_Exception, NULL);
        if (!vmp_module_error)
            return -1;
    }
    Py_INCREF(vmp_module_error);
    st->error = vmp_module_error;
    Py_INCREF(vmp_module_error);
    if (PyModule_AddObject(m, "VMProfError", vmp_module_error) < 0) {
        Py_DECREF(vmp_module_error);
        return -1;
    }
    if (vmp_module_init_reader(m) < 0 || vmp_module_init_sampler(m) < 0 ||
        vmp_module_init_export(m) < 0 || vmp_module_init_jitlog(m) < 0)
        return -1;
    return 0;
}

static int core_traverse(PyObject *m, visitproc visit, void *arg)
{
    core_state *st = PyModule_GetState(m);
    Py_VISIT(st->error);
    return 0;
}

static int core_clear(PyObject *m)
{
    core_state *st = PyModule_GetState(m);
    Py_CLEAR(st->error);
    return 0;
}

static void core_free(void *m)
{
    core_clear((PyObject *)m);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, (void *)core_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vmprof._core",
    .m_doc = "vmprof's C core: profile reading, trees, exports and the sampler.",
    .m_size = sizeof(core_state),
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}

/* module.c - creates vmprof._core and hands it to each binding file. */
#include "module.h"

PyObject *vmp_module_error;

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vmprof._core",
    .m_doc = "vmprof's C core: profile reading, trees, exports and the sampler.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&core_module);
    if (!m)
        return NULL;
    vmp_module_error = PyErr_NewExceptionWithDoc(
        "vmprof.VMProfError", "A vmprof operation failed; the message says why and what to do.",
        PyExc_Exception, NULL);
    if (!vmp_module_error || PyModule_AddObject(m, "VMProfError", vmp_module_error) < 0)
        goto fail;
    Py_INCREF(vmp_module_error); /* PyModule_AddObject stole one reference */
    if (vmp_module_init_reader(m) < 0 || vmp_module_init_sampler(m) < 0 ||
        vmp_module_init_export(m) < 0 || vmp_module_init_jitlog(m) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

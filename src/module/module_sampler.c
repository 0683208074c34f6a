/* module_sampler.c - bindings for the sampler (not written yet). */
#include "module.h"

int vmp_module_init_sampler(PyObject *module)
{
    (void)module;
    return 0;
}

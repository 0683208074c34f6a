/* module_reader.c - bindings for the reader (not written yet). */
#include "module.h"

int vmp_module_init_reader(PyObject *module)
{
    (void)module;
    return 0;
}

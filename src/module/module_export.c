/* module_export.c - bindings for the export (not written yet). */
#include "module.h"

int vmp_module_init_export(PyObject *module)
{
    (void)module;
    return 0;
}

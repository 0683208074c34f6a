/*
 * module.h - the extension module vmprof._core: thin bindings over
 * src/libvmprof (reading, trees, exports) and src/sampler (profiling).
 *
 * module.c creates the module and calls one init function per concern; each
 * lives in its own file and adds its functions and types to the module.
 */
#ifndef VMP_MODULE_H
#define VMP_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The exception type every binding raises for vmprof-specific failures
 * (exposed to Python as vmprof.VMProfError). */
extern PyObject *vmp_module_error;

/* Each returns 0, or -1 with a Python exception set. */
int vmp_module_init_reader(PyObject *module);  /* module_reader.c */
int vmp_module_init_sampler(PyObject *module); /* module_sampler.c */
int vmp_module_init_export(PyObject *module);  /* module_export.c */
int vmp_module_init_jitlog(PyObject *module);  /* module_jitlog.c */

/* The C profile behind a vmprof._core.Profile, or behind any object with a
 * `_profile` attribute holding one (vmprof.Stats); NULL with TypeError set
 * otherwise.  *holder gets a new reference to the Profile object that owns
 * it: the profile is valid until the caller releases that reference (not
 * while obj lives: another thread may replace obj._profile while the caller
 * works without the GIL, and a property may return a fresh one).
 * (module_reader.c) */
struct vmp_profile;
struct vmp_profile *vmp_module_profile_of(PyObject *obj, PyObject **holder);

/* Helpers the binding files share (module_util.c). */
/* Text from the C library (names, file names, meta), never failing on bad
 * UTF-8: invalid bytes become U+FFFD. */
PyObject *vmp_module_text(const char *s, size_t len);
/* A list of n items made by item(ctx, i); NULL with the exception if any fails. */
PyObject *vmp_module_list_of(size_t n, PyObject *(*item)(const void *ctx, size_t i),
                             const void *ctx);
/* d[k] = v, taking both references (either may be NULL from a failed
 * constructor, which makes it fail); 0 or -1. */
int vmp_module_dict_set_new(PyObject *d, PyObject *k, PyObject *v);

#endif /* VMP_MODULE_H */

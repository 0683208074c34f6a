/*
 * vmp_name.h - the name grammar of a profile's name records, written and
 * parsed here and nowhere else.
 *
 *   "py:<function>:<first line>:<file>"   a Python code object (VIRTUAL_IP)
 *   "n:<symbol>:<line>:<file>"            a native function (NATIVE_SYMBOLS);
 *                                         file "-" and line 0 when unknown
 *
 * The function part may itself hold colons (C++ symbols, "<lambda>:x"), so a
 * parser splits at the first ":<digits>:" after the prefix; a line may be
 * written as -1 (CPython's "no line"), read as 0.  What the profile makes of
 * a name (the function table) is in vmprof.h; this module only knows text.
 */
#ifndef VMP_NAME_H
#define VMP_NAME_H

#include <stddef.h>
#include <stdint.h>

typedef enum vmp_name_lang {
    VMP_NAME_OTHER = 0, /* neither prefix: the whole text is the function */
    VMP_NAME_PYTHON,    /* "py:" */
    VMP_NAME_NATIVE,    /* "n:" */
} vmp_name_lang;

typedef struct vmp_name_parts {
    vmp_name_lang lang;
    const char *func; /* into the parsed text, not NUL-terminated */
    size_t func_len;
    const char *file; /* "" when absent or "-" */
    size_t file_len;
    uint32_t line;    /* 0 when absent or negative */
} vmp_name_parts;

/* Splits a name record's text (len bytes, not necessarily NUL-terminated). */
void vmp_name_parse(const char *text, size_t len, vmp_name_parts *out);

/* Writes a name record's text into buf (NUL-terminated, truncated to
 * size - 1; a file of NULL or "" is written "-" for native names).  Returns
 * the length it would have had, as snprintf. */
size_t vmp_name_write(char *buf, size_t size, vmp_name_lang lang, const char *func,
                      size_t func_len, long line, const char *file, size_t file_len);

/* A native symbol of the interpreter's own machinery (the evaluation loop,
 * the call paths between C and Python, frames pushed and popped, start-up):
 * what a view hides when it shows C extensions right under their Python
 * callers (vmprofshow --hide-interpreter, VMP_Q_HIDE_INTERPRETER, the
 * server's interp=0: this is the one list).  Compiler suffixes
 * (".constprop.0", ".cold") and symbol versions ("@@GLIBC_2.34") are
 * ignored. */
int vmp_name_is_interpreter(const char *symbol, size_t len);

/* A Python file of `python -m vmprof`'s runner: runpy ("<frozen runpy>",
 * ".../runpy.py") or vmprof's own "vmprof/__main__.py" (VMP_NAME_RUNNER);
 * or of the interpreter's start-up that calls it (PyPy's
 * "<builtin>/app_main.py", VMP_NAME_STARTUP); else 0. */
enum { VMP_NAME_RUNNER = 1, VMP_NAME_STARTUP = 2 };
int vmp_name_is_runner_file(const char *file, size_t len);

#endif /* VMP_NAME_H */

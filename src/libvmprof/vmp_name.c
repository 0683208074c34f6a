/* vmp_name.c - the name grammar (contract in vmp_name.h). */
#include "vmp_name.h"

#include <stdio.h>
#include <string.h>

static int starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

void vmp_name_parse(const char *s, size_t len, vmp_name_parts *out)
{
    size_t start = 0;
    out->lang = VMP_NAME_OTHER;
    if (starts(s, len, "py:")) {
        out->lang = VMP_NAME_PYTHON;
        start = 3;
    } else if (starts(s, len, "n:")) {
        out->lang = VMP_NAME_NATIVE;
        start = 2;
    }
    out->func = s + start;
    out->func_len = len - start;
    out->file = "";
    out->file_len = 0;
    out->line = 0;
    if (!start)
        return;
    for (size_t i = start; i < len; i++) {
        if (s[i] != ':')
            continue;
        size_t j = i + 1;
        int negative = j < len && s[j] == '-';
        if (negative)
            j++;
        uint64_t line = 0;
        size_t digits = j;
        while (j < len && s[j] >= '0' && s[j] <= '9' && j - digits < 10)
            line = line * 10 + (uint64_t)(s[j++] - '0');
        if (j > digits && j < len && s[j] == ':') {
            out->func_len = i - start;
            out->line = negative || line > UINT32_MAX ? 0 : (uint32_t)line;
            out->file = s + j + 1;
            out->file_len = len - j - 1;
            if (out->file_len == 1 && out->file[0] == '-')
                out->file_len = 0;
            return;
        }
    }
}

size_t vmp_name_write(char *buf, size_t size, vmp_name_lang lang, const char *func,
                      size_t func_len, long line, const char *file, size_t file_len)
{
    const char *prefix = lang == VMP_NAME_PYTHON ? "py:" : lang == VMP_NAME_NATIVE ? "n:" : "";
    if (lang == VMP_NAME_NATIVE && (!file || !file_len)) {
        file = "-";
        file_len = 1;
    }
    if (!file)
        file = "";
    int n = lang == VMP_NAME_OTHER
                ? snprintf(buf, size, "%.*s", (int)func_len, func)
                : snprintf(buf, size, "%s%.*s:%ld:%.*s", prefix, (int)func_len, func, line,
                           (int)file_len, file);
    return n < 0 ? 0 : (size_t)n;
}

static int is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

int vmp_name_is_interpreter(const char *s, size_t len)
{
    /* Exact names, and prefixes followed by at least one more word
     * character (+) or by any (*).  The rule: a frame is the interpreter's
     * when its only job is to get a call into or out of a Python function's
     * frame (dispatch, argument binding, pushing and popping the frame,
     * checking the result) or to run the interpreter itself.  A C function
     * the program's code called stays, even when it calls back into Python
     * (builtin_sorted, list_sort, map_next, type_call, gen_iternext), as does
     * the work of an operation the code asked for (PyObject_RichCompare,
     * PyLong_FromLong, the GC run from the eval breaker).  Names of every
     * CPython 3.8-3.13 (the oldest first where they differ); they do not
     * clash across versions, so one list serves all. */
    static const char *const exact[] = {
        "_PyFunction_Vectorcall", "function_code_fastcall", "call_function", "do_call_core",
        "_PyObject_MakeTpCall", "PyObject_MakeTpCall", "_PyVectorcall_Call",
        "PyVectorcall_Call", "PyVectorcall_Function", "slot_tp_call", "gen_send_ex",
        "gen_send_ex2", "run_mod", "run_eval_code_obj", "Py_RunMain", "Py_BytesMain", "Py_Main",
        "main", "_start",
        /* call.c's helpers of the call paths: a va_list turned into a
         * call (PyObject_CallFunctionObjArgs, 3.8's key= calls), the
         * result's check after every call */
        "object_vacall", "_Py_CheckFunctionResult",
        /* 3.11+: a Python function's frame pushed and its arguments bound
         * (ceval.c), popped (pystate.c); 3.8-3.10's frame object freed when
         * the call returns (frameobject.c) */
        "initialize_locals", "_PyThreadState_PushFrame", "_PyThreadState_PopFrame",
        "frame_dealloc",
        /* the eval loop's periodic check (signals, GC, the GIL): what it
         * runs (gc_collect_main, a signal handler) stays */
        "eval_frame_handle_pending", "_Py_HandlePending",
        /* 3.12+ -X perf: the hook that runs a call through its trampoline,
         * and the trampolines (vmp_trampoline.h: named after their template) */
        "py_trampoline_evaluator", "_Py_trampoline_func_start", NULL};
    static const char *const prefix_more[] = {
        "_PyEval_", "PyEval_", "_PyCFunction_", "vectorcall_", "_PyRun_", "PyRun_", "pymain_",
        /* interpreter frames made, copied, cleared (frameobject.c, frame.c:
         * 3.8-3.10 _PyFrame_New_NoTrack, 3.11+ _PyFrame_Clear,
         * _PyFrame_ClearExceptCode, _PyFrame_MakeAndSetFrameObject, ...) */
        "_PyFrame_",
        /* call.c: keyword arguments packed and unpacked for a call */
        "_PyStack_",
        /* typeobject.c's slot functions: a type slot of a class defined in
         * Python, whose only job is to call the Python method (__init__,
         * __iter__, __eq__, __hash__, ...), as slot_tp_call above */
        "slot_tp_", "slot_nb_", "slot_sq_", "slot_mp_", "slot_am_", NULL};
    static const char *const prefix_any[] = {
        "_PyObject_Vectorcall", "PyObject_Vectorcall", "_PyObject_Call", "PyObject_Call",
        "_PyObject_FastCall", "PyObject_FastCall", "cfunction_vectorcall", "cfunction_call",
        "method_vectorcall", "builtin_exec", "__libc_start",
        /* 3.11+ ceval.c: _PyEvalFramePushAndInit (and 3.13's _Ex),
         * _PyEvalFrameClearAndPop: a call's frame pushed and popped */
        "_PyEvalFrame",
        /* 3.8's call paths of Python functions and PyMethodDefs */
        "_PyFunction_FastCall", "_PyMethodDef_RawFastCall",
        /* 3.11+ the adaptive interpreter specialising an instruction */
        "_Py_Specialize", NULL};
    size_t base = 0;
    while (base < len && s[base] != '.' && s[base] != '@') {
        if (!is_word(s[base]))
            return 0;
        base++;
    }
    for (int i = 0; exact[i]; i++)
        if (strlen(exact[i]) == base && memcmp(s, exact[i], base) == 0)
            return 1;
    for (int i = 0; prefix_more[i]; i++) {
        size_t n = strlen(prefix_more[i]);
        if (base > n && memcmp(s, prefix_more[i], n) == 0)
            return 1;
    }
    for (int i = 0; prefix_any[i]; i++) {
        size_t n = strlen(prefix_any[i]);
        if (base >= n && memcmp(s, prefix_any[i], n) == 0)
            return 1;
    }
    return 0;
}

static int ends(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int vmp_name_is_runner_file(const char *file, size_t len)
{
    if ((len == 14 && memcmp(file, "<frozen runpy>", 14) == 0) ||
        (len == 8 && memcmp(file, "runpy.py", 8) == 0) || ends(file, len, "/runpy.py") ||
        ends(file, len, "/vmprof/__main__.py") || ends(file, len, "\\runpy.py") ||
        ends(file, len, "\\vmprof\\__main__.py"))
        return VMP_NAME_RUNNER;
    if (len == 21 && memcmp(file, "<builtin>/app_main.py", 21) == 0)
        return VMP_NAME_STARTUP;
    return 0;
}

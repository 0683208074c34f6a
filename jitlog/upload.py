"""Uploading a JIT log: the upload protocol's steps as vmprof/upload.py speaks
them (runtime, jit log, freeze), the log extended with SOURCE_CODE records.

A server shows a trace's merge points as source lines, but PyPy's log holds
only file names and line numbers: the uploader, which runs where the program
ran, adds the lines the merge points name (with a little context around
them) as SOURCE_CODE records appended to the log, unless it has some already.
"""
import os
import tokenize

from vmprof import upload as vmprof_upload

CONTEXT = 2           # lines kept around each line a merge point names
MAX_LINES = 65535     # per SOURCE_CODE record (a u16 count)


def _read_lines(filename, base_dir):
    path = filename if os.path.isabs(filename) else os.path.join(base_dir, filename)
    try:
        with tokenize.open(path) as f:     # honours the coding cookie
            return f.read().splitlines()
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None  # <string>, a file gone since, a binary: nothing to add


def _indent_and_text(line):
    expanded = line.expandtabs(8)
    text = expanded.lstrip()
    return min(len(expanded) - len(text), 255), text.rstrip()


def source_code_records(jitlog_path, base_dir=None):
    """The SOURCE_CODE records for the lines the log's merge points name.

    b"" when the log has SOURCE_CODE records already (it was uploaded before)
    or none of its files can be read.  Relative file names are looked up in
    base_dir (default: the current directory, where the program ran).
    """
    from vmprof import _core
    log = _core.jitlog_read_file(jitlog_path)
    if log.source_lines():
        return b""
    base_dir = base_dir or os.getcwd()
    wanted = {}
    for filename, line in log.merge_point_lines():
        wanted.setdefault(filename, set()).add(line)
    records = []
    for filename in sorted(wanted):
        lines = _read_lines(filename, base_dir)
        if lines is None:
            continue
        chosen = set()
        for n in wanted[filename]:
            chosen.update(range(max(1, n - CONTEXT), min(len(lines), n + CONTEXT) + 1))
        entries = []
        for n in sorted(chosen):
            if n > 65535:
                break
            indent, text = _indent_and_text(lines[n - 1])
            entries.append((n, indent, text.encode("utf-8", "replace")))
        for start in range(0, len(entries), MAX_LINES):
            records.append(_core.jitlog_source_code_record(
                filename.encode("utf-8", "surrogateescape"), entries[start:start + MAX_LINES]))
    return b"".join(records)


def upload(jitlog_path, web_url, auth=None, argv="", timeout=vmprof_upload.DEFAULT_TIMEOUT):
    """Uploads a JIT log alone (a runtime of its own) and returns vmprof's
    UploadResult (traces_url is the log's page).  Raises UploadError."""
    return vmprof_upload.upload(None, web_url, auth, argv=argv, vm="PyPy",
                                jitlog_path=jitlog_path, timeout=timeout)

"""Reading vmprof profile files: read_profile().

The work happens in C (vmprof._core); this module only picks the entry point
for what it is given and turns a cut file into a warning.
"""
import io
import os
import shutil
import tempfile
import warnings

from vmprof.errors import VMProfError

try:
    from vmprof import _core
    # Stats and the stack-entry classes of Stats.profiles live in vmprof.stats,
    # which never imports this module.
    from vmprof.stats import (FRAME_CLASSES, AssemblerCode, BlackholeCode, Frame,  # noqa: F401
                              GCCode, JitTracingCode, JittedCode, NativeCode, Stats)
except ImportError:  # PyPy, or a source checkout without the built extension
    _core = None


def read_profile(prof, strict=False):
    """Reads a profile: a path, or a binary file object (plain or gzip).

    A profile whose program died mid-record is read up to its last complete
    record, with a warning that names the offset; strict=True makes that an
    error instead.  Malformed input raises vmprof.VMProfError.
    """
    if _core is None:
        raise VMProfError("reading a profile needs vmprof's C extension (vmprof._core), "
                          "which is not built for this interpreter; read the profile "
                          "with CPython (python -m vmprof.show FILE)")
    if isinstance(prof, bytes) and b"\0" in prof:
        # A path holds no NUL: these are a profile's bytes ("embedded null byte" otherwise)
        raise TypeError("read_profile takes a path or a binary file, not a profile's bytes: "
                        "give io.BytesIO(data)")
    if isinstance(prof, (str, bytes, os.PathLike)):
        # os.fspath here: one path type for every binding
        profile = _core.read_file(os.fspath(prof), strict=strict)
    elif hasattr(prof, "read"):
        profile = _read_file_object(prof, strict)
    else:
        raise TypeError("read_profile takes a path or a binary file, not %s"
                        % type(prof).__name__)
    summary = profile.summary()
    if summary["truncated_at"] >= 0:
        warnings.warn(
            "the profile ends inside a record at byte %d (the profiled program "
            "probably died while writing it); read %d complete samples before it"
            % (summary["truncated_at"], summary["n_samples"]),
            stacklevel=2,
        )
    return Stats(profile, summary)


def export(prof, format, out, thread=None, lines=False, no_native=False, title=None,
           html_min_fraction=0.0):
    """Writes a profile in another tool's format: collapsed, speedscope, pprof,
    firefox or html.

    prof is a Stats from read_profile() (nothing is read again) or a path;
    out is a path, a file descriptor, or a binary file object.  thread (an id)
    exports one thread; lines gives a frame per sampled line; no_native drops
    native frames.  The stacks start at the program, as every view's do.
    """
    if _core is None:
        raise VMProfError("exporting a profile needs vmprof's C extension (vmprof._core), "
                          "which is not built for this interpreter")
    source = (os.fspath(prof) if isinstance(prof, (str, bytes, os.PathLike))
              else getattr(prof, "_profile", prof))
    options = dict(thread=thread, lines=lines, no_native=no_native, title=title,
                   html_min_fraction=html_min_fraction)
    if isinstance(out, (str, bytes, os.PathLike, int)):
        target = os.fspath(out) if not isinstance(out, int) else out
        _core.export(source, format, target, **options)
        return
    if not hasattr(out, "write"):
        raise TypeError("export writes to a path, a file descriptor or a binary file, not %s"
                        % type(out).__name__)
    if isinstance(out, io.TextIOBase) and not _has_fileno(out):
        raise TypeError("export writes bytes: give a binary file (io.BytesIO, or open(path, "
                        "'wb')), not a text one")
    if _has_fileno(out):
        out.flush()
        _core.export(source, format, out.fileno(), **options)
        return
    # A file object of Python's own (io.BytesIO, a wrapper): through a
    # temporary file, which the C library writes as it writes any file.
    with tempfile.TemporaryFile() as tmp:
        _core.export(source, format, tmp.fileno(), **options)
        tmp.seek(0)
        shutil.copyfileobj(tmp, out)


def _has_fileno(f):
    try:
        f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


def _read_file_object(f, strict):
    try:
        fd = f.fileno()
        pos = f.tell()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        # The OS position may be ahead of the object's (read buffering).
        try:
            os.lseek(fd, pos, os.SEEK_SET)
        except OSError:
            pass  # a pipe: read on from where it is
        profile = _core.read_fd(fd, strict=strict)
        try:
            f.seek(0, os.SEEK_END)
        except (OSError, ValueError):
            pass
        return profile
    data = f.read()
    if isinstance(data, str):
        raise TypeError("read_profile needs a binary file (open it with 'rb')")
    return _core.read_bytes(data, strict=strict)

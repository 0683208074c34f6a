"""parse_jitlog: a PyPy JIT log read by the C decoder into a TraceForest.

A log cut short or damaged after its header is read up to the damage:
forest.exc then holds a ParseException saying at which byte and why.  Only
a bad header (not a JIT log, an unknown version) raises.
"""
from jitlog.objects import ParseException, TraceForest  # noqa: F401 (API)

try:
    from vmprof import _core
except ImportError:  # PyPy without the extension
    _core = None


def _require_core():
    if _core is None:
        raise ParseException(
            "reading JIT logs needs vmprof's C extension, which this interpreter lacks; "
            "read the log with CPython (python -m jitlog FILE)")
    return _core


def read_jitlog_data(filename):
    with open(str(filename), "rb") as f:
        return f.read()


def parse_jitlog(filename, data=None):
    """The TraceForest of the log in filename (or in data, when given).

    Plain and gzip-compressed logs are read.  Raises ParseException when the
    file is not a JIT log or cannot be read.
    """
    core = _require_core()
    try:
        if data is not None:
            log = core.jitlog_read_bytes(data)
        else:
            log = core.jitlog_read_file(str(filename))
    except core.VMProfError as e:
        raise ParseException(str(e))
    return TraceForest(log, filepath=filename)

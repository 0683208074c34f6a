"""The one exception type of vmprof (defined by the C core so that C and Python
raise the same class)."""
try:
    from vmprof._core import VMProfError
except ImportError:  # PyPy, or the extension was not built
    class VMProfError(Exception):
        """A vmprof operation failed; the message says why and what to do."""

"""read_profile's inputs (paths, file objects, pipes, gzip) and its handling
of cut and corrupt files."""
import gzip
import io
import os
import pathlib
import struct
import threading
import warnings

import pytest

import vmprof
from vmprof import _core

from data_paths import PROFILES
CALC = os.path.join(PROFILES, "calc_py311.prof")


def words(*ws):
    return struct.pack("<%dq" % len(ws), *ws)


def profile_bytes(stacks, mode=0, trailer=True, names=()):
    """A version-6 profile; stacks are (entries innermost first, thread)."""
    out = words(0, 3, 0, 990, 0)
    out += bytes([5, 0, 6, mode, 7]) + b"cpython"
    out += bytes([6]) + struct.pack("<qq", 1700000000, 250000) + b"UTC".ljust(8, b"\0")
    for key, value in (("os", "linux"), ("argv", "prog --x")):
        out += bytes([7]) + words(len(key)) + key.encode() + words(len(value)) + value.encode()
    for addr, name in names:
        out += bytes([2]) + words(addr, len(name)) + name.encode()
    for entries, thread in stacks:
        out += bytes([1]) + words(1, len(entries), *entries) + words(thread)
    if trailer:
        out += bytes([3]) + struct.pack("<qq", 1700000002, 750000) + b"UTC".ljust(8, b"\0")
    return out


SIMPLE = profile_bytes([([0x20, 0x10], 1)] * 3 + [([0x30, 0x10], 2)],
                       names=[(0x10, "py:main:1:m.py"), (0x20, "py:f:2:m.py"),
                              (0x30, "py:g:3:m.py")])


def test_path_str_bytes_pathlike():
    a = vmprof.read_profile(CALC)
    b = vmprof.read_profile(pathlib.Path(CALC))
    c = vmprof.read_profile(os.fsencode(CALC))
    assert len(a.profiles) == len(b.profiles) == len(c.profiles) > 0
    assert a.profiles[-1] == b.profiles[-1] == c.profiles[-1]


def test_file_objects_and_gzip(tmp_path):
    ref = vmprof.read_profile(CALC)
    with open(CALC, "rb") as f:
        data = f.read()
    with open(CALC, "rb") as f:
        f.read(3)  # a buffered reader ahead of the OS position
        f.seek(0)
        assert list(vmprof.read_profile(f).profiles) == list(ref.profiles)
    assert list(vmprof.read_profile(io.BytesIO(data)).profiles) == list(ref.profiles)
    gz = tmp_path / "calc.prof.gz"
    gz.write_bytes(gzip.compress(data))
    assert list(vmprof.read_profile(str(gz)).profiles) == list(ref.profiles)
    assert list(vmprof.read_profile(io.BytesIO(gz.read_bytes())).profiles) == list(ref.profiles)
    with pytest.raises(TypeError):
        vmprof.read_profile(io.StringIO("text"))


def test_what_is_neither_a_path_nor_a_file_is_named():
    """read_profile(None) said "'NoneType' object has no attribute 'read'",
    and a profile's bytes "embedded null byte" (they were taken for a path)."""
    with open(CALC, "rb") as f:
        data = f.read()
    with pytest.raises(TypeError, match="not a profile's bytes: give io.BytesIO"):
        vmprof.read_profile(data)
    assert len(vmprof.read_profile(io.BytesIO(data))) == len(vmprof.read_profile(CALC))
    for wrong in (None, 3.5):
        with pytest.raises(TypeError, match="takes a path or a binary file, not %s"
                                            % type(wrong).__name__):
            vmprof.read_profile(wrong)


def test_pipe():
    r, w = os.pipe()

    def writer():
        with os.fdopen(w, "wb") as out:
            for i in range(0, len(SIMPLE), 7):
                out.write(SIMPLE[i:i + 7])
                out.flush()

    t = threading.Thread(target=writer)
    t.start()
    with os.fdopen(r, "rb") as f:
        stats = vmprof.read_profile(f)
    t.join()
    assert len(stats.profiles) == 4 and stats.complete


def test_summary_fields():
    s = _core.read_bytes(SIMPLE)
    stats = vmprof.Stats(s)
    assert stats.getmeta("os") == "linux" and stats.getargv() == "prog --x"
    assert stats.get_runtime_in_microseconds() == 2500000
    assert stats.start_time.tzinfo is not None and stats.start_time.microsecond == 250000
    assert (stats.end_time - stats.start_time).total_seconds() == 2.5
    assert stats.threads == [1, 2]
    assert stats.profiles[0] == ([0x10, 0x20], 1, 1, 0)
    assert stats.profiles[-1] == ([0x10, 0x30], 1, 2, 0)
    assert stats.profiles[1:3] == [([0x10, 0x20], 1, 1, 0)] * 2
    with pytest.raises(IndexError):
        stats.profiles[4]


def test_no_trailer_reads_everything_without_warning():
    data = profile_bytes([([0x20, 0x10], 1)] * 5, trailer=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = vmprof.read_profile(io.BytesIO(data))
    assert len(stats.profiles) == 5 and not stats.complete
    assert stats.end_time is None and stats.get_runtime_in_microseconds() == 0


def test_cut_record_warns_with_offset_and_strict_raises():
    full = profile_bytes([([0x20, 0x10], 1)] * 5, trailer=False)
    cut = full[:-5]
    record_start = len(full) - (1 + 8 * 5)
    with pytest.warns(UserWarning, match="byte %d" % record_start):
        stats = vmprof.read_profile(io.BytesIO(cut))
    assert len(stats.profiles) == 4 and stats.truncated_at == record_start
    with pytest.raises(vmprof.VMProfError, match="byte %d.*ends inside a STACKTRACE" % record_start):
        vmprof.read_profile(io.BytesIO(cut), strict=True)


@pytest.mark.parametrize("data, offset, words_in_message", [
    (SIMPLE[:-25] + b"\x42", len(SIMPLE) - 25, "unknown record tag 0x42"),
    (SIMPLE[:-25] + b"\x04\x04pypy", len(SIMPLE) - 25, "INTERP_NAME"),
    (SIMPLE[:-25] + b"\x01" + words(1, 70000), len(SIMPLE) - 25, "depth 70000"),
    (SIMPLE[:-25] + b"\x02" + words(8, 1 << 50), len(SIMPLE) - 25, "name length"),
    (struct.pack(">5q", 0, 3, 0, 990, 0), 0, "big-endian"),
    (b"#!/bin/sh\necho hello\n", 0, "not a vmprof profile"),
    (b"", 0, "empty"),
])
def test_corrupt_input_errors(data, offset, words_in_message):
    with pytest.raises(vmprof.VMProfError) as info:
        vmprof.read_profile(io.BytesIO(data))
    msg = str(info.value)
    assert "byte %d" % offset in msg and words_in_message in msg and "\n" not in msg


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(vmprof.VMProfError, match="nope.prof"):
        vmprof.read_profile(str(tmp_path / "nope.prof"))


def test_without_the_extension_the_error_says_what_to_do(monkeypatch):
    import vmprof.reader
    monkeypatch.setattr(vmprof.reader, "_core", None)
    with pytest.raises(vmprof.VMProfError, match="C extension"):
        vmprof.read_profile(CALC)

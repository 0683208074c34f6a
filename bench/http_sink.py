"""The floor of an upload, for bench_server.py: an HTTP server on 127.0.0.1
that takes POST bodies and does only what keeping them must cost.

  python http_sink.py discard    reads each body into one buffer and drops it
  python http_sink.py keep DIR   writes each body to a new file in DIR (as it
                                 comes, in the pieces recv gives; handed to
                                 the disk every 8 MiB, as the server does)
                                 and fsyncs it and DIR before answering, then
                                 deletes it
  python http_sink.py zstd DIR   the same, but compresses each piece with
                                 libzstd (level 1, as the server stores a
                                 profile) and writes what that gives
  python http_sink.py direct DIR the same as keep, but each body is received
                                 into pieces of aligned memory (2 MiB, 4 of
                                 them) that a second thread writes with
                                 O_DIRECT (the disk reads them from memory:
                                 no page cache), as the server does

Prints "listening PORT" when ready; answers 200 with an empty body once the
declared Content-Length has arrived; serves one connection at a time, until
killed.  recv_into one reused buffer, os.write from a view of it: no copy
beyond the kernel's, so the figure is the socket's and the disk's, not
Python's.
"""
import ctypes
import ctypes.util
import mmap
import os
import queue
import socket
import sys
import threading

PIECE = 1 << 20
WRITEBACK_STEP = 8 << 20
SYNC_FILE_RANGE_WRITE = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


class Zstd(object):
    """libzstd's streaming compressor through ctypes (one call per piece: the
    cost is libzstd's, not Python's)."""
    class Buffer(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t),
                    ("pos", ctypes.c_size_t)]

    CONTINUE, END = 0, 2
    LEVEL_PARAMETER = 100

    def __init__(self, level=1):
        self.lib = ctypes.CDLL(ctypes.util.find_library("zstd"))
        self.lib.ZSTD_createCCtx.restype = ctypes.c_void_p
        self.lib.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.lib.ZSTD_compressStream2.restype = ctypes.c_size_t
        self.lib.ZSTD_compressStream2.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_void_p, ctypes.c_int]
        self.lib.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
        self.cctx = self.lib.ZSTD_createCCtx()
        self.lib.ZSTD_CCtx_setParameter(self.cctx, self.LEVEL_PARAMETER, level)
        self.out = ctypes.create_string_buffer(1 << 17)

    def compress(self, buf, n, end=False):
        """Yields the compressed pieces of buf[:n] (a ctypes-addressable
        bytearray), as views of one reused buffer."""
        src = (ctypes.c_char * len(buf)).from_buffer(buf) if len(buf) else None
        inb = self.Buffer(ctypes.addressof(src) if src is not None else None, n, 0)
        while True:
            outb = self.Buffer(ctypes.addressof(self.out), len(self.out), 0)
            left = self.lib.ZSTD_compressStream2(self.cctx, ctypes.byref(outb),
                                                 ctypes.byref(inb), self.END if end else self.CONTINUE)
            if outb.pos:
                yield memoryview(self.out)[:outb.pos]
            if (left == 0) if end else (inb.pos == inb.size):
                break
        del src

    def close(self):
        self.lib.ZSTD_freeCCtx(self.cctx)


def write_back(fd, start, end):
    """Starts writing [start, end) of the file to the disk, and returns."""
    libc.sync_file_range(fd, start, end - start, SYNC_FILE_RANGE_WRITE)


def body_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


DIRECT_PIECE = 2 << 20
DIRECT_PIECES = 4


def receive_head(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        got = conn.recv(65536)
        if not got:
            return None, None
        head += got
    head, _, rest = head.partition(b"\r\n\r\n")
    return head, rest


def serve_direct(conn, keep_dir, n):
    head, rest = receive_head(conn)
    if head is None:
        return
    left = body_length(head) - len(rest)
    path = os.path.join(keep_dir, "body-%d" % n)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    dfd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    pieces = [mmap.mmap(-1, DIRECT_PIECE) for _ in range(DIRECT_PIECES)]  # page-aligned
    free, full = queue.Queue(), queue.Queue()
    for i in range(DIRECT_PIECES):
        free.put(i)

    def writer():  # os.pwrite lets go of the GIL while the disk works
        while True:
            item = full.get()
            if item is None:
                return
            i, off = item
            os.pwrite(dfd, pieces[i], off)
            free.put(i)
    thread = threading.Thread(target=writer)
    thread.start()
    i, fill, off = free.get(), len(rest), 0
    pieces[i][:fill] = rest
    while left > 0:
        got = conn.recv_into(memoryview(pieces[i])[fill:], min(DIRECT_PIECE - fill, left))
        if not got:
            break
        fill += got
        left -= got
        if fill == DIRECT_PIECE:
            full.put((i, off))
            off += DIRECT_PIECE
            i, fill = free.get(), 0
    full.put(None)
    thread.join()
    if fill:
        os.pwrite(fd, memoryview(pieces[i])[:fill], off)
    os.fsync(fd)
    os.close(dfd)
    os.close(fd)
    d = os.open(keep_dir, os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    os.unlink(path)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def serve(conn, keep_dir, n, pack):
    buf = bytearray(PIECE)
    view = memoryview(buf)
    head, rest = receive_head(conn)
    if head is None:
        return
    left = body_length(head) - len(rest)
    fd = None
    zstd = Zstd() if pack else None
    written = written_back = 0

    def write(piece):
        nonlocal written, written_back
        os.write(fd, piece)
        written += len(piece)
        if written - written_back >= WRITEBACK_STEP:
            write_back(fd, written_back, written)
            written_back = written

    def keep(got, end=False):
        if zstd is None:
            write(view[:got])
        else:
            for piece in zstd.compress(buf, got, end):
                write(piece)

    if keep_dir:
        path = os.path.join(keep_dir, "body-%d" % n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        buf[:len(rest)] = rest
        keep(len(rest))
    while left > 0:
        got = conn.recv_into(buf, min(PIECE, left))
        if not got:
            break
        if fd is not None:
            keep(got)
        left -= got
    if fd is not None:
        if zstd is not None:
            keep(0, end=True)
            zstd.close()
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(keep_dir, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        os.unlink(path)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def main():
    keep_dir = sys.argv[2] if sys.argv[1] in ("keep", "zstd", "direct") else None
    pack = sys.argv[1] == "zstd"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    print("listening %d" % listener.getsockname()[1], flush=True)
    n = 0
    while True:
        conn, _ = listener.accept()
        with conn:
            if sys.argv[1] == "direct":
                serve_direct(conn, keep_dir, n)
            else:
                serve(conn, keep_dir, n, pack)
        n += 1


if __name__ == "__main__":
    main()

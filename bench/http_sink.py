"""The floor of an upload, for bench_server.py: an HTTP server on 127.0.0.1
that takes POST bodies and does only what keeping them must cost.

  python http_sink.py discard    reads each body into one buffer and drops it
  python http_sink.py keep DIR   writes each body to a new file in DIR (as it
                                 comes, in the pieces recv gives; handed to
                                 the disk every 8 MiB, as the server does)
                                 and fsyncs it and DIR before answering, then
                                 deletes it

Prints "listening PORT" when ready; answers 200 with an empty body once the
declared Content-Length has arrived; serves one connection at a time, until
killed.  recv_into one reused buffer, os.write from a view of it: no copy
beyond the kernel's, so the figure is the socket's and the disk's, not
Python's.
"""
import ctypes
import os
import socket
import sys

PIECE = 1 << 20
WRITEBACK_STEP = 8 << 20
SYNC_FILE_RANGE_WRITE = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def write_back(fd, start, end):
    """Starts writing [start, end) of the file to the disk, and returns."""
    libc.sync_file_range(fd, start, end - start, SYNC_FILE_RANGE_WRITE)


def body_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def serve(conn, keep_dir, n):
    buf = bytearray(PIECE)
    view = memoryview(buf)
    head = b""
    while b"\r\n\r\n" not in head:
        got = conn.recv(65536)
        if not got:
            return
        head += got
    head, _, rest = head.partition(b"\r\n\r\n")
    left = body_length(head) - len(rest)
    fd = None
    if keep_dir:
        path = os.path.join(keep_dir, "body-%d" % n)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, rest)
    written = written_back = len(rest)
    while left > 0:
        got = conn.recv_into(buf, min(PIECE, left))
        if not got:
            break
        if fd is not None:
            os.write(fd, view[:got])
            written += got
            if written - written_back >= WRITEBACK_STEP:
                write_back(fd, written_back, written)
                written_back = written
        left -= got
    if fd is not None:
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(keep_dir, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        os.unlink(path)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def main():
    keep_dir = sys.argv[2] if sys.argv[1] == "keep" else None
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    print("listening %d" % listener.getsockname()[1], flush=True)
    n = 0
    while True:
        conn, _ = listener.accept()
        with conn:
            serve(conn, keep_dir, n)
        n += 1


if __name__ == "__main__":
    main()

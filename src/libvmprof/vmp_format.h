/*
 * vmp_format.h - the vmprof profile file format: the one place that knows its
 * tags, mode flags, versions and limits.
 *
 * The format is described in docs/spec/profile-format.md; docs/format.md
 * says what this project's reader accepts and rejects.  Everything that reads or writes a
 * profile takes its constants from here; no other file spells a tag number.
 */
#ifndef VMP_FORMAT_H
#define VMP_FORMAT_H

/* Record tags: a one-byte tag opens every record after the static header. */
enum vmp_tag {
    VMP_TAG_STACKTRACE = 0x01,
    VMP_TAG_VIRTUAL_IP = 0x02,     /* name of a code object: "py:..." */
    VMP_TAG_TRAILER = 0x03,        /* end time; its absence means the program died */
    VMP_TAG_INTERP_NAME = 0x04,    /* obsolete, never written, rejected on read */
    VMP_TAG_HEADER = 0x05,         /* u16 big-endian version, u8 mode, u8 n, interp name */
    VMP_TAG_TIME_N_ZONE = 0x06,    /* int64 sec, int64 usec, 8 bytes zone name */
    VMP_TAG_META = 0x07,           /* word klen, key, word vlen, value */
    VMP_TAG_NATIVE_SYMBOLS = 0x08, /* name of a native function: "n:..." */
};

/* Mode flags, one byte in the HEADER record. */
enum vmp_mode {
    VMP_MODE_MEMORY = 0x01,    /* every STACKTRACE ends with the RSS in KiB */
    VMP_MODE_LINES = 0x02,     /* stack entries are [line, code-id] pairs */
    VMP_MODE_NATIVE = 0x04,    /* native frames (addr | 1) appear in stacks */
    VMP_MODE_RPYTHON = 0x08,   /* PyPy: stack entries are [kind, value] pairs */
    VMP_MODE_REAL_TIME = 0x10, /* sampled on a wall-clock timer */
};

/* Kinds in RPYTHON mode's [kind, value] pairs (PyPy's _vmprof). */
enum vmp_rpython_kind {
    VMP_RPY_PYTHON_CODE = 1,
    VMP_RPY_BLACKHOLE = 2,
    VMP_RPY_JITTED = 3,
    VMP_RPY_JIT_TRACING = 4,
    VMP_RPY_GC = 5,
    VMP_RPY_ASSEMBLER = 6,
    VMP_RPY_NATIVE = 7,
};

/* Versions: 0 base, 1 thread ids, 2 tags, 3 memory, 4 mode byte, 5 trailer
 * time, 6 TIME_N_ZONE.  Writers write the newest. */
#define VMP_FORMAT_VERSION 6
#define VMP_FORMAT_OLDEST_VERSION 0
/* vmprof 0.6 writes version 7: every STACKTRACE ends with an int64 timestamp
 * in nanoseconds (after the thread id and the RSS).  Readers accept it. */
#define VMP_FORMAT_VERSION_SAMPLE_TIME 7
#define VMP_FORMAT_NEWEST_READ 7

/* The static header: five words; word 1 is this marker. */
#define VMP_STATIC_HEADER_WORDS 5
#define VMP_STATIC_HEADER_MARKER 3

/* Limits.  Writers cap stacks near the original's limit; readers accept more. */
#define VMP_MAX_DEPTH_WRITTEN 1000
#define VMP_MAX_DEPTH_READ 65536
#define VMP_MAX_FUNC_NAME 512   /* bytes of the function-name part of a name */
#define VMP_MAX_NAME 1023       /* bytes of a whole name record's text */
#define VMP_MAX_META_TEXT 65536 /* bytes of one META key or value */
#define VMP_MAX_NAME_READ 65536 /* readers reject a longer name record as corrupt */
#define VMP_ZONE_NAME_BYTES 8

/* The low bit of a stack entry marks a native frame (CPython files). */
#define VMP_NATIVE_BIT 1u

#endif /* VMP_FORMAT_H */

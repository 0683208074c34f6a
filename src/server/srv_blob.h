/*
 * srv_blob.h - the files the server keeps beside its database: each run's
 * profile exactly as uploaded, compressed, and its PyPy jit log.
 *
 * A plain profile upload is written while it arrives in the compact lossless
 * form (vmp_compact.h, runs/<id>.prof.vmc): the decoder that reads it
 * recognises the records that repeat an earlier stack byte for byte, and
 * those are kept as short references, the rest as it came (the 1M-sample
 * bench profile: 324 MiB -> ~4.4 MiB written).  Other uploads (gzipped, jit
 * logs) are written as they come.  A large body goes to the disk from
 * aligned memory with O_DIRECT, by a thread of its writer.  Later a
 * background thread compresses the file with zstd (runs/<id>.prof.vmc.zst
 * or runs/<id>.prof.zst, then the uncompressed file goes): even zstd at a
 * fast level costs CPU the upload must not wait for.  Reading gives back
 * the bytes uploaded, identical, whichever way they are stored.
 *
 * Layout under the data folder:
 *   runs/<id>.prof.vmc.zst  a compact profile, zstd-compressed after the fact
 *   runs/<id>.prof.vmc      a plain upload in the compact form
 *   runs/<id>.prof.zst  a plain upload of builds before the compact form,
 *                       zstd-compressed (one frame, with its size and checksum)
 *   runs/<id>.prof.gz   the same from builds before zstd, gzip (still read,
 *                       never written now)
 *   runs/<id>.prof      an upload as it came (gzip already, or left by a
 *                       build before the compact form, compressed at start)
 *   runs/<id>.jit.gz    the jit log, as the client gzipped it
 *   tmp/                files being written; a writer renames its file into
 *                       runs/ only when complete and on disk, so runs/ never
 *                       holds half a file, and tmp/ is cleared at start-up.
 * Names are made from run ids (hex digits) only: no request names a file.
 */
#ifndef SRV_BLOB_H
#define SRV_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "srv_store.h"
#include "vmprof.h"

typedef enum srv_blob_kind { SRV_BLOB_PROFILE = 0, SRV_BLOB_JITLOG = 1 } srv_blob_kind;

/* Writes all n bytes to fd (retrying short writes); 0, or -1 with errno. */
int srv_write_all(int fd, const void *data, size_t n);

/* Creates runs/ and tmp/ under data_dir, and removes from tmp/ the files
 * not touched for tmp_max_age seconds (0: all, when no other server shares
 * the folder). */
int srv_blob_init(const char *data_dir, int tmp_max_age, srv_err *err);

typedef struct srv_blob_writer srv_blob_writer;

srv_blob_writer *srv_blob_begin(const char *data_dir, const char *id, srv_blob_kind kind,
                                srv_err *err);
/* The body's declared length, when known: its blocks are reserved at once,
 * and a profile of 4 MB or more takes the direct path (8 MB of memory and a
 * thread, until the commit or the abort; 1 MB in pieces of 256 KiB for a
 * compact file, so that little is left for the commit's fsync). */
void srv_blob_expect(srv_blob_writer *w, uint64_t bytes);
/* A plain profile, decoded by d while it arrives: the file keeps it in the
 * compact lossless form (vmp_compact.h: a stack repeated byte for byte is
 * kept once), written from what d reads.  Before the first write; each piece
 * is pushed into d before it is written here, and d is finished (or freed)
 * before the commit.  Without this call the bytes are kept as they come. */
int srv_blob_compact(srv_blob_writer *w, vmp_decoder *d, srv_err *err);
/* Appends n bytes; the file is handed to the disk piece by piece as it
 * grows (the data are on disk only after srv_blob_commit). */
int srv_blob_write(srv_blob_writer *w, const void *data, size_t n, srv_err *err);
/* The file being written (in tmp/), to read it back before the commit. */
const char *srv_blob_pending_path(const srv_blob_writer *w);
/* Flushes, syncs and moves the file into runs/ (replacing an earlier one);
 * frees w either way.  *size receives the bytes written to the writer. */
int srv_blob_commit(srv_blob_writer *w, uint64_t *size, srv_err *err);
/* srv_blob_commit in two steps.  finish: every byte written and synced,
 * still in tmp/ (w is freed only on failure).  place: the file renamed into
 * runs/, replacing the run's earlier one, and the rename synced; frees w
 * either way.  An upload places its file only while its run cannot be
 * frozen meanwhile (srv_store_run_record), so that a frozen run's file never
 * changes. */
int srv_blob_finish(srv_blob_writer *w, uint64_t *size, srv_err *err);
int srv_blob_place(srv_blob_writer *w, srv_err *err);
/* Forgets the file; frees w. */
void srv_blob_abort(srv_blob_writer *w);

/* The stored file of a run (either profile name), or -1 when there is none. */
int srv_blob_path(const char *data_dir, const char *id, srv_blob_kind kind, char *path,
                  size_t size);
/* Removes a run's files. */
void srv_blob_remove(const char *data_dir, const char *id);

/* Reads back the bytes as they were uploaded, in pieces (decompressing
 * what was compressed here, streamed: memory does not follow the file). */
typedef struct srv_blob_reader srv_blob_reader;
srv_blob_reader *srv_blob_open(const char *data_dir, const char *id, srv_blob_kind kind);
/* A profile file by its path, outside a data folder: its name says how it
 * holds the bytes, as the server names them (ID.prof.vmc.zst, .prof.vmc,
 * .prof.zst, .prof.gz; any other name: the bytes as they are). */
srv_blob_reader *srv_blob_open_file(const char *path);
/* Bytes read into buf, 0 at the end, -1 on error. */
ssize_t srv_blob_read(srv_blob_reader *r, void *buf, size_t n);
/* After -1: why, one line ("runs/ID.prof.vmc.zst is damaged: it is cut
 * short ..."; the file as it was opened); "" when nothing failed. */
const char *srv_blob_reader_error(srv_blob_reader *r);
void srv_blob_close(srv_blob_reader *r);

/* Decodes a run's stored profile, whichever way it is stored (NULL with err
 * set when it is missing or does not read). */
vmp_profile *srv_blob_read_profile(const char *data_dir, const char *id, srv_err *err);

/* Calls keep(ctx, id) for each run with files in runs/; removes the files of
 * those for which it returns 0 (the database does not know them). */
int srv_blob_sweep(const char *data_dir, int (*keep)(void *ctx, const char *id), void *ctx,
                   srv_err *err);

/* A pause for the tests (tests/server): when the environment variable
 * env_name names a folder, creates FOLDER/reached there and waits until
 * FOLDER/go exists (at most 60 s).  Unset, it costs one getenv. */
void srv_test_gate(const char *env_name);

/* The background compressor: started once (with scan, it first queues the
 * plain profiles in runs/: every one, or with frozen those of the runs for
 * which frozen(ctx, id) returns non-zero, called during this call only),
 * given each profile once the freeze this server answered made it a run
 * (srv_upload.c), stopped at exit (a file half compressed stays in tmp/ and
 * is cleared at the next start).  Servers sharing the folder may queue one
 * file each: the one that holds the plain file's lock (flock) compresses it,
 * the others skip it. */
int srv_blob_compressor_start(const char *data_dir, int scan,
                              int (*frozen)(void *ctx, const char *id), void *ctx, srv_err *err);
void srv_blob_compress_later(const char *id);
void srv_blob_compressor_stop(void);

#endif /* SRV_BLOB_H */

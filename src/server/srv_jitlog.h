/*
 * srv_jitlog.h - PyPy jit logs on the server: each run's log (stored by the
 * upload, runs/<id>.jit.gz) decoded once by the C decoder (src/jitlog), kept
 * in memory, and served as JSON:
 *
 *   GET /api/runs/ID/jitlog                 the log's facts
 *   GET /api/runs/ID/jitlog/traces          the trace list (?q= &sort= &offset= &limit=)
 *   GET /api/runs/ID/jitlog/traces/TRACE    one trace: stages op by op, merge
 *                                           points as source lines, machine
 *                                           code disassembled, guard <-> bridge
 *
 * Contract:
 *   - A jit log is readable by whoever may read its run (srv_load_run).
 *   - q is the query language of vjl_query.h, parsed and never evaluated: a
 *     syntax error is 400 with the message and its 1-based "column".
 *   - Decoded logs are kept as profiles are, by srv_cache: least recently
 *     used dropped first beyond a byte budget (a log in use stays alive until
 *     released); one not in memory is decoded again from its file, once,
 *     while others wait.  srv_cache_drop() forgets a run's log.
 *   - Everything here is safe to call from any connection's thread.
 */
#ifndef SRV_JITLOG_H
#define SRV_JITLOG_H

#include <stddef.h>

#include "srv_cache.h"
#include "srv_store.h"

/* The cache of decoded jit logs (free it with srv_cache_free). */
srv_cache *srv_jitlogs_new(size_t budget_bytes, const char *data_dir);

typedef struct srv_jitlog srv_jitlog;

/* A jit log just received, decoded from its file (still in tmp/, so that a
 * file that is no jit log never replaces a run's good one).  NULL with err
 * (the decoder's one line) when it is not a jit log at all (a bad header); a
 * log cut or damaged later is decoded with its warning, as the decoder reads
 * it. */
srv_jitlog *srv_jitlog_decode(const char *path, srv_err *err);
/* Keeps log (taken over) as run id's, replacing an earlier one: once its
 * file is in runs/. */
void srv_jitlog_keep(srv_cache *jitlogs, const char *id, srv_jitlog *log);
void srv_jitlog_free(srv_jitlog *log);

#endif /* SRV_JITLOG_H */

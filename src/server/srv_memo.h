/*
 * srv_memo.h - answers kept for asking again.  A frozen run never changes,
 * so the answer to one view of it (one tree: its selection, path, depth and
 * share; one function table: its selection, search, order and length)
 * stays right until the run is deleted.  Keyed by a canonical text of
 * the parsed question, not of the URL, so the same question asked in other
 * words hits too.  Bounded by bytes, least recently used dropped first.
 */
#ifndef SRV_MEMO_H
#define SRV_MEMO_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_memo srv_memo;

srv_memo *srv_memo_new(size_t budget_bytes);
void srv_memo_free(srv_memo *m);
/* A malloc'd copy of the answer to key (its length in *len), or NULL.  An
 * answer promised (srv_memo_promise) is waited for, at most
 * SRV_MEMO_PROMISE_WAIT_MS, rather than computed a second time. */
char *srv_memo_get(srv_memo *m, const char *key, size_t *len);
/* Keeps a copy of text as the answer to key (and keeps a promise of it). */
void srv_memo_put(srv_memo *m, const char *key, const char *text, size_t len);
/* The answer to key is being computed and will be put (or the promise
 * withdrawn): those who ask for it meanwhile wait.  A few promises are kept
 * at once; beyond them this returns 0 and nobody waits. */
#define SRV_MEMO_PROMISE_WAIT_MS 2000
int srv_memo_promise(srv_memo *m, const char *key);
void srv_memo_withdraw(srv_memo *m, const char *key);
/* Forgets every answer whose key names run id (deleted). */
void srv_memo_forget_run(srv_memo *m, const char *id);
/* Answers kept now, and how many were given from here since the start. */
void srv_memo_stats(srv_memo *m, size_t *kept, uint64_t *reused);

#endif /* SRV_MEMO_H */

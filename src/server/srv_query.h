/*
 * srv_query.h - the views of a run (srv_query.c): the routes, and the work
 * done once when a profile arrives so that its first view is ready.
 */
#ifndef SRV_QUERY_H
#define SRV_QUERY_H

#include "srv_http.h"
#include "vmprof.h"

/* The answers the UI asks first about run id: promised (srv_memo_promise:
 * whoever asks for one meanwhile waits for it rather than computing it too),
 * then computed and kept.  An upload is answered between the two, so that
 * the client does not wait for views it has not asked for yet. */
void srv_query_promise(srv_server *s, const char *id);
void srv_query_prepare(srv_server *s, const char *id, const vmp_profile *p);

#endif /* SRV_QUERY_H */

/*
 * srv_query.h - the views of a run (srv_query.c): the routes, and the work
 * done once when a profile arrives so that its first view is ready.
 */
#ifndef SRV_QUERY_H
#define SRV_QUERY_H

#include "srv_http.h"
#include "vmprof.h"

/* Computes and keeps (srv_memo) the answers the UI asks first about run id. */
void srv_query_prepare(srv_server *s, const char *id, const vmp_profile *p);

#endif /* SRV_QUERY_H */

/*
 * srv_api.h - what the API's handlers share (srv_api.c, srv_query.c,
 * srv_upload.c): run ids, loading a run a request names, and JSON of runs.
 */
#ifndef SRV_API_H
#define SRV_API_H

#include <jansson.h>

#include "srv_http.h"
#include "srv_store.h"

/* Whether id has the shape of a run id (so it is never looked up otherwise). */
int srv_valid_run_id(const char *id);
/* Loads frozen run id into *run (free with srv_run_clear); otherwise replies
 * 404 (or 503) and returns -1.  Runs still uploading are not found. */
int srv_load_run(srv_request *req, const char *id, srv_run *run);
/* {"id", "argv", "name", "vm", "owner", "created", "samples", "duration"}. */
json_t *srv_run_list_item(const srv_run *run);

#endif /* SRV_API_H */

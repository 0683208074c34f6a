/*
 * srv_http.h - the HTTP side of vmprof-server: the daemon (libmicrohttpd, one
 * thread per connection, so that a handler may block on the disk or the
 * database without stalling others), the routing table, the limits, and the
 * helpers handlers reply with.
 *
 * A request goes: headers in -> route found, caller identified, declared
 * length checked against the route's limit (413 before any of the body is
 * read) -> for a streamed route, begin() -> the body, piece by piece, to
 * chunk() (or into a buffer of at most SRV_JSON_BODY_MAX for the others) ->
 * handle().  A reply decided while a streamed body arrives (a corrupt upload)
 * is sent at once and the connection closed: the rest of the body is not read.
 * Every reply of the API is JSON; errors are {"error": "...", "status": N}.
 */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "srv_auth.h"
#include "srv_store.h"

struct MHD_Daemon;
struct MHD_Connection;
struct MHD_Response;
typedef struct srv_cache srv_cache;
typedef struct srv_memo srv_memo;
typedef struct srv_throttle srv_throttle;

#define SRV_JSON_BODY_MAX (1u << 20) /* a JSON request body */

typedef struct srv_limits {
    uint64_t max_upload;       /* bytes of one upload (--max-upload) */
    unsigned max_connections;  /* open connections, all clients */
    unsigned max_per_ip;       /* open connections from one address */
    unsigned max_uploads;      /* uploads being received at once (503 beyond) */
    unsigned request_seconds;  /* a whole request, headers to last byte */
    unsigned idle_seconds;     /* a connection that sends nothing is closed */
    size_t header_bytes;       /* the request line and headers (431 beyond) */
    size_t cache_bytes;        /* decoded profiles kept in memory */
} srv_limits;

typedef struct srv_server {
    char data_dir[4096];
    char web_dir[4096];        /* static files of the browser UI, "" for none */
    char speedscope_dir[4096]; /* speedscope's files, served at /speedscope/ */
    srv_store *store;
    srv_cache *cache;
    srv_memo *memo;            /* answers of views, kept */
    srv_throttle *guesses;     /* failed logins and wrong API tokens per address */
    srv_cache *jitlogs;        /* decoded jit logs, kept (srv_jitlog.h) */
    srv_limits limits;
    int anonymous_upload;
    atomic_int uploads_in_flight;
    atomic_int requests_in_flight;
    struct MHD_Daemon *daemon;
    unsigned port;             /* the port actually bound */
} srv_server;

typedef struct srv_request srv_request;

typedef enum srv_body {
    SRV_BODY_NONE = 0,         /* a body, if any, is refused (413 beyond 0 bytes) */
    SRV_BODY_JSON,             /* buffered, at most SRV_JSON_BODY_MAX */
    SRV_BODY_STREAM,           /* passed to chunk() as it arrives, up to max_upload */
} srv_body;

typedef struct srv_route {
    const char *method;
    const char *pattern;       /* "/api/runs/ * /tree": '*' is one path segment */
    srv_body body;
    void (*handle)(srv_request *req);
    /* SRV_BODY_STREAM only.  begin() may reply (refusing the upload); chunk()
     * receives the body; handle() is called after its last byte. */
    void (*begin)(srv_request *req);
    void (*chunk)(srv_request *req, const char *data, size_t n);
    /* Called when the request ends for whatever reason, to free stream state. */
    void (*cleanup)(srv_request *req);
} srv_route;

#define SRV_MAX_ARGS 4

struct srv_request {
    srv_server *server;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const srv_route *route;
    const char *args[SRV_MAX_ARGS]; /* the '*' segments of the route */
    int nargs;
    char *path_copy;
    srv_identity who;
    char *body;                /* SRV_BODY_JSON: the body, NUL-terminated */
    size_t body_len, body_cap;
    uint64_t received;         /* body bytes so far */
    struct timespec started;
    void *state;               /* a streamed route's own */
    /* The reply, queued once the body is in. */
    struct MHD_Response *response;
    unsigned status;
    /* A reply decided while a streamed body arrives: its JSON, which
     * srv_http.c sends itself (libmicrohttpd 0.9.75 queues no reply between
     * the body's pieces: MHD_queue_response refuses it). */
    int in_body;
    char *early_text;
    size_t early_len;
};

/* Starts serving on host:port ("127.0.0.1:8000"; port 0 picks one, read it
 * from server->port).  Returns 0, or -1 with err set. */
int srv_http_start(srv_server *server, const char *listen, srv_err *err);
/* Stops accepting, lets requests in flight finish (up to grace_seconds), then
 * closes every connection. */
void srv_http_stop(srv_server *server, unsigned grace_seconds);

/* ---- for handlers ---- */

/* The value of a query argument or request header, or NULL. */
const char *srv_arg(srv_request *req, const char *name);
const char *srv_header(srv_request *req, const char *name);

/* The client's address as bytes (4 for IPv4, 16 for IPv6) in out; returns
 * their count, 0 when unknown.  A request that comes from a loopback address
 * with X-Forwarded-For is taken to come from the reverse proxy in front
 * (docs/server.md): the last address that header names is the client's. */
size_t srv_client_address(srv_request *req, unsigned char out[16]);

/* Guessing credentials (srv_throttle.h), counted per client address: whether
 * the client must wait (1 having replied 429 with Retry-After; what says
 * "too many failed logins or wrong API tokens"), a failed guess, a login
 * that passed. */
int srv_guess_refused(srv_request *req);
void srv_guess_failed(srv_request *req);
void srv_guess_passed(srv_request *req);

/* A JSON string of text from outside (a client, a profile): jansson takes
 * only UTF-8, so other bytes become '?' rather than the reply failing.
 * NULL gives null. */
json_t *srv_json_text(const char *s);

/* Replies with json (a reference is stolen). */
void srv_reply_json(srv_request *req, unsigned status, json_t *json);
/* The same with JSON text already made (malloc'd, taken over). */
void srv_reply_json_text(srv_request *req, unsigned status, char *text, size_t len);
void srv_reply_error(srv_request *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replies with a prepared response (taken over); content_type may be NULL. */
void srv_reply_response(srv_request *req, unsigned status, struct MHD_Response *response,
                        const char *content_type);
int srv_replied(const srv_request *req);

/* Whether the request may change things as who: a session-authenticated
 * request must carry the session's CSRF token.  Replies 403 when not. */
int srv_check_csrf(srv_request *req);

/* The route tables of the other modules, ended by a NULL method. */
extern const srv_route srv_upload_routes[];
extern const srv_route srv_api_routes[];
extern const srv_route srv_query_routes[];
extern const srv_route srv_jitlog_routes[];

#endif /* SRV_HTTP_H */

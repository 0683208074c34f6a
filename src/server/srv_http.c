/*
 * srv_http.c - the daemon, the dispatch of requests to routes, the limits,
 * and the static files of the browser UI (see srv_http.h).
 */
#include "srv_http.h"
#include "srv_throttle.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* How long a reply sent before the body's end may take to be sent and
 * acknowledged before its connection is closed regardless. */
#define EARLY_SECONDS 2.0

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- replies ------------------------------------------------------------- */

json_t *srv_json_text(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return json_null();
    for (size_t i = 0; i <= n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_string(copy);
    free(copy);
    return j ? j : json_null();
}


int srv_replied(const srv_request *req)
{
    return req->response != NULL;
}

void srv_reply_response(srv_request *req, unsigned status, struct MHD_Response *response,
                        const char *content_type)
{
    if (!response)
        return;
    if (req->response) {
        /* The first reply decided stands (an error found while streaming). */
        MHD_destroy_response(response);
        return;
    }
    if (content_type)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    req->response = response;
    req->status = status;
}

/* gzip of text at level 1, for a client that accepts it; NULL when not worth it. */
static char *gzip_text(const char *text, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, len);
    char *out = malloc(cap);
    if (out) {
        z.next_in = (unsigned char *)text;
        z.avail_in = (uInt)len;
        z.next_out = (unsigned char *)out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
            free(out);
            out = NULL;
        }
    }
    *out_len = z.total_out;
    deflateEnd(&z);
    return out;
}

static int accepts_gzip(srv_request *req)
{
    const char *ae = srv_header(req, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    return ae && strstr(ae, "gzip");
}

void srv_reply_json(srv_request *req, unsigned status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(json);
    if (!text) {
        static const char oom[] = "{\"error\": \"out of memory\", \"status\": 500}";
        srv_reply_response(req, 500,
                           MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                                           MHD_RESPMEM_PERSISTENT),
                           "application/json");
        return;
    }
    srv_reply_json_text(req, status, text, strlen(text));
}

void srv_reply_json_text(srv_request *req, unsigned status, char *text, size_t len)
{
    if (req->in_body && !req->response && !req->early_text) {
        /* (sent by answer_early, uncompressed: an error of a line) */
        req->early_text = malloc(len ? len : 1);
        if (req->early_text) {
            memcpy(req->early_text, text, len);
            req->early_len = len;
        }
    }
    /* A big tree goes compressed to a browser: a few MB of JSON is a few
     * hundred KB on the wire. */
    /* (Never one that may go early: answer_early sends early_text, plain,
     * with the response's headers.) */
    if (len > 4096 && len < UINT32_MAX && !req->in_body && accepts_gzip(req)) {
        size_t zlen;
        char *z = gzip_text(text, len, &zlen);
        struct MHD_Response *r =
            z ? MHD_create_response_from_buffer(zlen, z, MHD_RESPMEM_MUST_FREE) : NULL;
        if (r) {
            free(text);
            MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
            MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
            srv_reply_response(req, status, r, "application/json");
            return;
        }
        free(z);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (r)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    else
        free(text);
    srv_reply_response(req, status, r, "application/json");
}

void srv_reply_error(srv_request *req, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The message may quote a client's bytes (a path, a header). */
    srv_reply_json(req, status, json_pack("{s:o, s:i}", "error", srv_json_text(msg), "status",
                                          (int)status));
}

const char *srv_arg(srv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *srv_header(srv_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int srv_check_csrf(srv_request *req)
{
    if (!req->who.by_session)
        return 1;
    const char *given = srv_header(req, "X-CSRF-Token");
    if (given && *req->who.csrf && strcmp(given, req->who.csrf) == 0)
        return 1;
    srv_reply_error(req, 403, "this request needs the X-CSRF-Token header of your session "
                              "(GET /api/me gives it)");
    return 0;
}

/* ---- routing ------------------------------------------------------------- */

/* Matches the path (without its trailing slash) against pattern; fills
 * req->args with the '*' segments, which point into req->path_copy. */
static int match(srv_request *req, const char *pattern)
{
    char *p = req->path_copy;
    const char *q = pattern;
    int nargs = 0;
    const char *args[SRV_MAX_ARGS];
    while (*p && *q) {
        if (*q == '*') {
            if (*p == '/' || nargs == SRV_MAX_ARGS)
                return 0;
            args[nargs++] = p;
            while (*p && *p != '/')
                p++;
            q++;
            continue;
        }
        if (*p != *q)
            return 0;
        p++;
        q++;
    }
    if (*p || *q)
        return 0;
    /* The captured segments end at a '/' that must become a NUL; that is done
     * only for the route chosen, on a fresh copy. */
    req->nargs = nargs;
    for (int i = 0; i < nargs; i++)
        req->args[i] = args[i];
    return 1;
}

static const srv_route *const route_tables[] = {srv_upload_routes, srv_api_routes,
                                                srv_query_routes, srv_jitlog_routes};

/* Finds the route; sets *wrong_method when the path exists with another. */
static const srv_route *find_route(srv_request *req, int *wrong_method)
{
    *wrong_method = 0;
    for (size_t t = 0; t < sizeof route_tables / sizeof *route_tables; t++)
        for (const srv_route *r = route_tables[t]; r->method; r++) {
            if (!match(req, r->pattern))
                continue;
            /* HEAD is GET without the body (which the daemon leaves out). */
            const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
            if (strcmp(r->method, method) == 0) {
                for (int i = 0; i < req->nargs; i++) {
                    char *end = strchr(req->args[i], '/');
                    if (end)
                        *end = 0;
                }
                return r;
            }
            *wrong_method = 1;
        }
    return NULL;
}

/* ---- static files of the browser UI ---------------------------------------- */

static const char placeholder_page[] =
    "<!doctype html><meta charset=utf-8><title>vmprof</title>"
    "<p>This vmprof server has no browser UI installed yet. Its JSON API is at "
    "<a href=\"/api/runs\">/api/runs</a> (see docs/server.md).";

static const char *content_type_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
        {".svg", "image/svg+xml"},             {".png", "image/png"},
        {".ico", "image/x-icon"},              {".woff2", "font/woff2"},
        {".map", "application/json"},          {".wasm", "application/wasm"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Only plain names below the UI folder: letters, digits, '-', '_', '.' and
 * '/', no segment starting with a dot (so no "..", no hidden files). */
static int safe_static_path(const char *p)
{
    if (*p != '/' || strlen(p) > 200)
        return 0;
    for (const char *c = p; *c; c++) {
        if (*c == '/' && c[1] == '.')
            return 0;
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.' || *c == '/'))
            return 0;
    }
    return 1;
}

/* Opens a regular file of dir named by url (already checked safe). */
static int open_static(const char *dir, const char *url, char *path, size_t size,
                       struct stat *st)
{
    if (!dir[0])
        return -1;
    snprintf(path, size, "%s%s", dir, url);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* GET of anything outside /api/: the UI's files; /speedscope/... the
 * speedscope viewer's; a path that names no file and has no extension is one
 * of the UI's own routes (/runs/ID, /compare/A/B), answered with its page. */
static void serve_static(srv_request *req)
{
    srv_server *s = req->server;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        srv_reply_error(req, 405, "%s is not allowed on %s", req->method, req->url);
        return;
    }
    char url[256];
    snprintf(url, sizeof url, "%s", req->url);
    size_t len = strlen(url);
    if (len && url[len - 1] == '/' && len + 10 < sizeof url)
        strcat(url, "index.html");
    const char *dir = s->web_dir, *name = url;
    if (strncmp(url, "/speedscope/", 12) == 0) {
        dir = s->speedscope_dir;
        name = url + 11;
    }
    char path[4400];
    struct stat st;
    int fd = safe_static_path(name) ? open_static(dir, name, path, sizeof path, &st) : -1;
    const char *last = strrchr(url, '/');
    if (fd < 0 && dir == s->web_dir && !strchr(last ? last : url, '.'))
        fd = open_static(dir, "/index.html", path, sizeof path, &st);
    if (fd >= 0) {
        struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
        if (r)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        srv_reply_response(req, 200, r, content_type_of(path));
        return;
    }
    if (strcmp(url, "/index.html") == 0) {
        srv_reply_response(req, 200,
                           MHD_create_response_from_buffer(sizeof placeholder_page - 1,
                                                           (void *)placeholder_page,
                                                           MHD_RESPMEM_PERSISTENT),
                           "text/html; charset=utf-8");
        return;
    }
    srv_reply_error(req, 404, "nothing at %s", req->url);
}

/* ---- the access handler -------------------------------------------------------- */

static uint64_t body_limit(const srv_request *req)
{
    if (!req->route)
        return 0;
    switch (req->route->body) {
    case SRV_BODY_STREAM:
        return req->server->limits.max_upload;
    case SRV_BODY_JSON:
        return SRV_JSON_BODY_MAX;
    default:
        return 64 * 1024; /* tolerated (a freeze may carry a stray body), ignored */
    }
}

/* The headers a reply gets as it goes out, whichever way: queued to
 * libmicrohttpd (queue) or written on the socket before the body's end
 * (answer_early, which writes every header of the response object, so a
 * header added here or by srv_reply_response reaches both; none is added
 * anywhere else). */
static void complete_headers(srv_request *req)
{
    if (req->status == 503 && req->response &&
        !MHD_get_response_header(req->response, MHD_HTTP_HEADER_RETRY_AFTER)) {
        /* Every 503 says "retry": when (the database's pool knows how long
         * it will refuse; otherwise a second). */
        char retry[16];
        snprintf(retry, sizeof retry, "%d", srv_store_retry_after(req->server->store));
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
}

static enum MHD_Result queue(srv_request *req)
{
    if (!req->response)
        srv_reply_error(req, 500, "the server did not answer this request (a bug)");
    complete_headers(req);
    enum MHD_Result rc = MHD_queue_response(req->conn, req->status, req->response);
    return rc;
}

/* ---- a reply before the body's end ------------------------------------------------ */

/* Set while this connection's thread closes a connection answered early:
 * libmicrohttpd then logs the "internal error" our MHD_NO stands for, which
 * is none. */
static _Thread_local int closing_answered;

/* Sends all of buf on the (non-blocking) socket by the deadline. */
static int send_all(int fd, const char *buf, size_t len, const struct timespec *started)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
            seconds_since(started) > EARLY_SECONDS)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 50);
    }
    return 0;
}

/* The response object's headers as lines of the early answer, into buf
 * (cap bytes); one that does not fit makes len -1 (no answer written). */
typedef struct early_head {
    char *buf;
    int len, cap;
} early_head;

static enum MHD_Result add_early_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    early_head *h = cls;
    if (kind != MHD_HEADER_KIND || h->len < 0)
        return MHD_YES;
    int n = snprintf(h->buf + h->len, (size_t)(h->cap - h->len), "%s: %s\r\n", key,
                     value ? value : "");
    h->len = n >= 0 && n < h->cap - h->len ? h->len + n : -1;
    return MHD_YES;
}

/* A reply decided while a streamed body arrives (an upload whose profile the
 * decoder refused, a disk that is full): sent now rather than after the rest
 * of the body, which may be hundreds of MB the server would only read to throw
 * away.  libmicrohttpd (0.9.75) takes a reply before the body's end only with
 * the headers, never between the body's pieces (MHD_queue_response refuses
 * it), so it is written here, on the connection's socket, with "Connection:
 * close", and MHD_NO makes libmicrohttpd close the connection instead of
 * reading the rest as a next request.  Closing a socket with unread bytes
 * sends a reset, which on the client's side may throw away a reply it has
 * received but not read yet, or one still on its way; so the reply and its
 * end (FIN) are sent first and the close waits until the client's system has
 * acknowledged both (a client in the middle of sending then gets EPIPE on its
 * next write, and reads the reply it holds, as urllib3 and our client do).
 * None of the rest of the body is read meanwhile.  Returns what the access
 * handler returns. */
static enum MHD_Result answer_early(srv_request *req)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info || !req->early_text)
        return MHD_YES; /* (answered at the end, the rest discarded: out of memory) */
    int fd = info->connect_fd;
    complete_headers(req);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    /* The status line and what libmicrohttpd writes itself for a queued
     * reply (Date, Connection, Content-Length); every other header is the
     * response object's, as queue sends it. */
    char head[2048];
    early_head h = {head, 0, (int)sizeof head};
    h.len = snprintf(head, sizeof head, "HTTP/1.1 %u %s\r\nDate: %s\r\nConnection: close\r\n",
                     req->status, MHD_get_reason_phrase_for(req->status), date);
    MHD_get_response_headers(req->response, add_early_header, &h);
    int n = -1;
    if (h.len >= 0) {
        n = snprintf(head + h.len, sizeof head - (size_t)h.len, "%s: %zu\r\n\r\n",
                     MHD_HTTP_HEADER_CONTENT_LENGTH, req->early_len);
        n = n > 0 && (size_t)n < sizeof head - (size_t)h.len ? h.len + n : -1;
    }
    /* (one write: the body in a second small one would wait for the
     * acknowledgement of the first, with Nagle's algorithm) */
    char *whole = n > 0 ? malloc((size_t)n + req->early_len) : NULL;
    if (!whole)
        return MHD_YES;
    memcpy(whole, head, (size_t)n);
    memcpy(whole + n, req->early_text, req->early_len);
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    int sent = send_all(fd, whole, (size_t)n + req->early_len, &started);
    free(whole);
    if (sent == 0) {
        shutdown(fd, SHUT_WR);
        /* (SIOCOUTQ: bytes sent and not yet acknowledged, the FIN counted) */
        int unacked = 0;
        while (ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked > 0 &&
               seconds_since(&started) < EARLY_SECONDS)
            poll(NULL, 0, 2);
    }
    closing_answered = 1;
    return MHD_NO;
}

/* A body over its limit (one without a declared length: 413 is answered
 * from the length otherwise), or a request past the time limit: the client
 * is told which, before the connection is closed (it was closed without a
 * word before). */
static enum MHD_Result cut_off(srv_request *req)
{
    if (req->response || !req->route)
        return MHD_NO; /* (a reply decided before, not sent early: none now either) */
    req->in_body = 1;
    if (req->received > body_limit(req))
        srv_reply_error(req, 413, "the request body is over %llu bytes, the most this server "
                                  "takes%s", (unsigned long long)body_limit(req),
                        req->route->body == SRV_BODY_STREAM ? " (vmprof-server --max-upload)"
                                                            : "");
    else
        srv_reply_error(req, 408, "the request took over %u s, the most this server gives one "
                                  "(vmprof-server --request-timeout); send it faster or from "
                                  "nearer", req->server->limits.request_seconds);
    req->in_body = 0;
    /* What the request held goes before the client hears (an upload's file
     * in tmp/ is removed); its cleanup is then called again, with nothing
     * left to do. */
    if (req->route->cleanup)
        req->route->cleanup(req);
    if (req->response)
        answer_early(req); /* (closed either way) */
    return MHD_NO;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* 431 beyond --header limit (libmicrohttpd says it itself only beyond its
 * connection memory, which is larger: see CONNECTION_MEMORY). */
static int headers_too_big(srv_request *req)
{
    size_t n = strlen(req->method) + strlen(req->url) + 12;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND,
                              add_header_size, &n);
    if (n <= req->server->limits.header_bytes)
        return 0;
    srv_reply_error(req, 431, "the request line and headers are %zu bytes; this server takes "
                              "at most %zu", n, req->server->limits.header_bytes);
    return 1;
}

/* The first call: headers are in, no body read yet. */
static enum MHD_Result begin_request(srv_server *s, srv_request *req)
{
    if (headers_too_big(req))
        return queue(req);
    int wrong_method;
    req->route = find_route(req, &wrong_method);
    const char *len_header = srv_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared = len_header ? strtoull(len_header, NULL, 10) : 0;
    if (!req->route) {
        if (strncmp(req->url, "/api/", 5) != 0 && strcmp(req->url, "/api") != 0)
            serve_static(req);
        else if (wrong_method)
            srv_reply_error(req, 405, "%s is not allowed on %s", req->method, req->url);
        else
            srv_reply_error(req, 404, "no API endpoint %s %s (see docs/server.md)",
                            req->method, req->url);
        return queue(req);
    }
    if (declared > body_limit(req)) {
        srv_reply_error(req, 413,
                        "the request body is %llu bytes; this server takes at most %llu "
                        "(vmprof-server --max-upload)",
                        (unsigned long long)declared, (unsigned long long)body_limit(req));
        return queue(req);
    }
    /* A request with a token is refused before the token is looked at while
     * its address has guessed wrong too often. */
    const char *authorization = srv_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (authorization && *authorization && srv_guess_refused(req))
        return queue(req);
    srv_err err = {{0}};
    int rc = srv_auth_identify(s->store, authorization, srv_header(req, MHD_HTTP_HEADER_COOKIE),
                               now_ms(), &req->who, &err);
    if (rc < 0) {
        srv_reply_error(req, 503, "%s", err.message);
        return queue(req);
    }
    if (rc > 0) {
        srv_guess_failed(req);
        srv_reply_error(req, 401, "the API token given is not valid on this server; "
                                  "check --web-auth (vmprof-server user add makes one)");
        return queue(req);
    }
    if (req->route->begin) {
        req->route->begin(req);
        if (req->response)
            return queue(req);
    }
    return MHD_YES;
}

static void take_body(srv_request *req, const char *data, size_t n)
{
    if (req->route->body == SRV_BODY_STREAM) {
        req->route->chunk(req, data, n);
        return;
    }
    if (req->route->body != SRV_BODY_JSON)
        return;
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        char *b = realloc(req->body, cap);
        if (!b) {
            srv_reply_error(req, 500, "out of memory");
            return;
        }
        req->body = b;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    srv_server *s = cls;
    srv_request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&s->requests_in_flight, 1);
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        req->server = s;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->path_copy = strdup(url);
        if (!req->path_copy)
            return MHD_NO;
        /* "/api/runtime/ID/freeze/" and ".../freeze" are the same endpoint. */
        size_t len = strlen(req->path_copy);
        if (len > 1 && req->path_copy[len - 1] == '/')
            req->path_copy[len - 1] = 0;
        return begin_request(s, req);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        req->received += n;
        /* A body without a declared length is cut off at the limit; a slow
         * one at the request time limit: answered, and the rest not read. */
        if (req->received > body_limit(req) ||
            seconds_since(&req->started) > s->limits.request_seconds)
            return cut_off(req);
        if (!req->response) {
            req->in_body = 1;
            take_body(req, upload_data, n);
            req->in_body = 0;
            if (req->response && req->route->body == SRV_BODY_STREAM)
                return answer_early(req);
        }
        return MHD_YES;
    }
    if (!req->response)
        req->route->handle(req);
    return queue(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    srv_server *s = cls;
    srv_request *req = *con_cls;
    if (!req)
        return;
    if (req->route && req->route->cleanup)
        req->route->cleanup(req);
    if (req->response)
        MHD_destroy_response(req->response);
    closing_answered = 0;
    free(req->early_text);
    free(req->body);
    free(req->path_copy);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&s->requests_in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (closing_answered)
        return;
    fputs("vmprof-server: ", stderr);
    vfprintf(stderr, fmt, ap);
}

size_t srv_client_address(srv_request *req, unsigned char out[16])
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = info ? info->client_addr : NULL;
    size_t len = 0;
    int loopback = 0;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(out, &in->sin_addr, 4);
        len = 4;
        loopback = out[0] == 127;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        len = 16;
        loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                   (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && out[12] == 127);
    }
    const char *forwarded = loopback ? srv_header(req, "X-Forwarded-For") : NULL;
    if (forwarded) {
        const char *last = strrchr(forwarded, ',');
        last = last ? last + 1 : forwarded;
        while (*last == ' ' || *last == '\t')
            last++;
        char text[INET6_ADDRSTRLEN];
        size_t n = strcspn(last, " \t");
        if (n && n < sizeof text) {
            memcpy(text, last, n);
            text[n] = 0;
            unsigned char parsed[16];
            if (inet_pton(AF_INET, text, parsed) == 1) {
                memcpy(out, parsed, 4);
                return 4;
            }
            if (inet_pton(AF_INET6, text, parsed) == 1) {
                memcpy(out, parsed, 16);
                return 16;
            }
        }
    }
    return len;
}

int srv_guess_refused(srv_request *req)
{
    unsigned char address[16];
    size_t len = srv_client_address(req, address);
    unsigned wait = srv_throttle_wait(req->server->guesses, address, len, now_ms());
    if (!wait)
        return 0;
    srv_reply_error(req, 429, "too many failed logins or wrong API tokens from your address: "
                              "try again in %u s", wait);
    char retry[32];
    snprintf(retry, sizeof retry, "%u", wait);
    if (req->response)
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    return 1;
}

void srv_guess_failed(srv_request *req)
{
    unsigned char address[16];
    size_t len = srv_client_address(req, address);
    srv_throttle_failed(req->server->guesses, address, len, now_ms());
}

void srv_guess_passed(srv_request *req)
{
    unsigned char address[16];
    size_t len = srv_client_address(req, address);
    srv_throttle_passed(req->server->guesses, address, len);
}

/* ---- start and stop ------------------------------------------------------------ */

static int parse_listen(const char *listen, struct sockaddr_storage *addr, int *v6, srv_err *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || !colon[1] || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err->message, sizeof err->message,
                 "--listen %s: give HOST:PORT, for example 127.0.0.1:8000", listen);
        return -1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err->message, sizeof err->message, "--listen %s: the port is not a number "
                 "from 0 to 65535", listen);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err->message, sizeof err->message, "--listen %s: cannot resolve %s: %s",
                 listen, h, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    if (*v6)
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)addr)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* A connection's memory in libmicrohttpd holds its headers and then its read
 * buffer, which is about half of it: at the 64 KB the headers need, a 340 MB
 * upload arrived in 32 KB reads (10,000 of them, each with a poll and two
 * writes).  So it is larger, and the header limit is checked here instead
 * (headers_too_big).  But libmicrohttpd 0.9.75 zeroes the whole of it at the
 * end of each request of a kept-alive connection, and the freed half of the
 * read buffer once a request's headers are in: with 1 MiB that was a quarter
 * of the CPU of a page of the runs list.  512 KiB, measured against 1 MiB
 * (bench/RESULTS.md, 2026-11-30 10:03-10:47): a first page 0.127 -> 0.090 ms of server
 * CPU, a search 0.28 -> 0.22 ms; an upload of the 324 MiB profile in pieces of
 * up to ~256 KB, server CPU 0.315 -> 0.320 s (256 KiB: 0.30-0.34 s, noisier;
 * before the upload's O_DIRECT writer 256 KiB cost uploads 20% more). */
#define CONNECTION_MEMORY (512 * 1024)

static size_t connection_memory(const srv_limits *limits)
{
    return limits->header_bytes > CONNECTION_MEMORY ? limits->header_bytes : CONNECTION_MEMORY;
}

int srv_http_start(srv_server *s, const char *listen, srv_err *err)
{
    struct sockaddr_storage addr;
    int v6 = 0;
    if (parse_listen(listen, &addr, &v6, err) < 0)
        return -1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (v6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->limits.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->limits.max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->limits.idle_seconds,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory(&s->limits),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err->message, sizeof err->message,
                 "cannot listen on %s: %s (is another server using that port?)", listen,
                 strerror(errno ? errno : EADDRINUSE));
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return 0;
}

void srv_http_stop(srv_server *s, unsigned grace_seconds)
{
    if (!s->daemon)
        return;
    MHD_quiesce_daemon(s->daemon);
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    while (atomic_load(&s->requests_in_flight) > 0 && seconds_since(&started) < grace_seconds)
        usleep(20 * 1000);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}

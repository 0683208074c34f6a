/*
 * srv_auth.h - who is asking, and what they may do.
 *
 * Credentials:
 *   - API tokens ("Authorization: Token KEY", as the upload clients send
 *     them): 24 random bytes in hex, shown once when made, stored only as
 *     their BLAKE2b hash (a token has full entropy, so a fast hash is safe);
 *   - passwords, for the browser: stored as libsodium's Argon2id string
 *     (memory-hard; at most two hashed at once, so logins cannot exhaust
 *     memory);
 *   - sessions: a random cookie (HttpOnly, SameSite=Strict), stored hashed,
 *     with a CSRF token that every state-changing request made with the
 *     cookie must repeat in the X-CSRF-Token header.
 * Rules: anyone may read every run; uploading without credentials is allowed
 * only with --anonymous-upload on; a run may be changed (renamed, deleted) by
 * its owner or an admin, and an anonymous run by an admin only.
 */
#ifndef SRV_AUTH_H
#define SRV_AUTH_H

#include <stddef.h>

#include "srv_store.h"

#define SRV_TOKEN_HEX 48
#define SRV_SESSION_COOKIE "vmprof_session"
#define SRV_SESSION_SECONDS (14 * 24 * 3600)

int srv_auth_init(void);

/* A fresh run id: SRV_ID_LEN hex digits. */
void srv_auth_new_run_id(char out[SRV_ID_LEN + 1]);
/* A fresh secret (token, session, csrf): SRV_TOKEN_HEX hex digits. */
void srv_auth_new_secret(char out[SRV_TOKEN_HEX + 1]);
/* The stored form of a token or session secret. */
void srv_auth_hash_secret(const char *secret, char out[SRV_HASH_HEX + 1]);

/* Argon2id; 0, or -1 when out of memory. */
int srv_auth_hash_password(const char *password, char *out, size_t size);
int srv_auth_check_password(const char *stored, const char *password);

typedef struct srv_identity {
    srv_user user;         /* id 0: anonymous */
    int by_session;        /* credentials came from the session cookie */
    char session_hash[SRV_HASH_HEX + 1];
    char csrf[SRV_TOKEN_HEX + 1];
} srv_identity;

/* From the Authorization and Cookie headers (either may be NULL).  Returns 0
 * (who->user.id 0 when no credentials were given), 1 when credentials were
 * given but are not valid (a wrong token is refused, never treated as
 * anonymous), -1 on a database error. */
int srv_auth_identify(srv_store *store, const char *authorization, const char *cookie,
                      int64_t now_ms, srv_identity *who, srv_err *err);

/* Whether who may rename or delete run. */
int srv_auth_may_change(const srv_identity *who, const srv_run *run);

#endif /* SRV_AUTH_H */

/*
 * srv_auth.c - tokens, passwords, sessions and the permission rule (see
 * srv_auth.h), on libsodium.
 */
#include "srv_auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Argon2id at libsodium's "interactive" cost takes 64 MiB per hash. */
#define MAX_PASSWORD_HASHES 2
static pthread_mutex_t hash_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hash_freed = PTHREAD_COND_INITIALIZER;
static int hashes_running;

int srv_auth_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

void srv_auth_new_run_id(char out[SRV_ID_LEN + 1])
{
    unsigned char raw[SRV_ID_LEN / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, SRV_ID_LEN + 1, raw, sizeof raw);
}

void srv_auth_new_secret(char out[SRV_TOKEN_HEX + 1])
{
    unsigned char raw[SRV_TOKEN_HEX / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, SRV_TOKEN_HEX + 1, raw, sizeof raw);
}

void srv_auth_hash_secret(const char *secret, char out[SRV_HASH_HEX + 1])
{
    unsigned char h[SRV_HASH_HEX / 2];
    crypto_generichash(h, sizeof h, (const unsigned char *)secret, strlen(secret), NULL, 0);
    sodium_bin2hex(out, SRV_HASH_HEX + 1, h, sizeof h);
}

static void hash_slot_take(void)
{
    pthread_mutex_lock(&hash_lock);
    while (hashes_running >= MAX_PASSWORD_HASHES)
        pthread_cond_wait(&hash_freed, &hash_lock);
    hashes_running++;
    pthread_mutex_unlock(&hash_lock);
}

static void hash_slot_give(void)
{
    pthread_mutex_lock(&hash_lock);
    hashes_running--;
    pthread_cond_signal(&hash_freed);
    pthread_mutex_unlock(&hash_lock);
}

int srv_auth_hash_password(const char *password, char *out, size_t size)
{
    if (size < crypto_pwhash_STRBYTES)
        return -1;
    hash_slot_take();
    int rc = crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                               crypto_pwhash_MEMLIMIT_INTERACTIVE);
    hash_slot_give();
    return rc;
}

int srv_auth_check_password(const char *stored, const char *password)
{
    if (!stored || !*stored)
        return 0;
    hash_slot_take();
    int ok = crypto_pwhash_str_verify(stored, password, strlen(password)) == 0;
    hash_slot_give();
    return ok;
}

/* The value of cookie `name` in a Cookie header, copied into out. */
static int cookie_value(const char *header, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    for (const char *p = header; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t vlen = len - nlen - 1;
            if (vlen >= size)
                return -1;
            memcpy(out, p + nlen + 1, vlen);
            out[vlen] = 0;
            return 0;
        }
        p = end;
    }
    return -1;
}

int srv_auth_identify(srv_store *store, const char *authorization, const char *cookie,
                      int64_t now_ms, srv_identity *who, srv_err *err)
{
    memset(who, 0, sizeof *who);
    char hash[SRV_HASH_HEX + 1];
    if (authorization && *authorization) {
        /* "Token KEY"; the original clients spell the header AUTHORIZATION,
         * which HTTP treats as the same name. */
        if (strncasecmp(authorization, "Token ", 6) != 0)
            return 1;
        const char *key = authorization + 6;
        while (*key == ' ')
            key++;
        if (strlen(key) > 256)
            return 1;
        srv_auth_hash_secret(key, hash);
        int rc = srv_store_user_by_token(store, hash, &who->user, err);
        if (rc != 0)
            memset(&who->user, 0, sizeof who->user);
        return rc;
    }
    char secret[SRV_TOKEN_HEX + 1];
    if (cookie && cookie_value(cookie, SRV_SESSION_COOKIE, secret, sizeof secret) == 0) {
        srv_auth_hash_secret(secret, hash);
        int rc = srv_store_session_get(store, hash, now_ms, &who->user, who->csrf,
                                       sizeof who->csrf, err);
        if (rc != 0) {
            memset(&who->user, 0, sizeof who->user);
            /* An expired or unknown session is simply no session: the browser
             * keeps sending its old cookie after a logout elsewhere. */
            return rc < 0 ? -1 : 0;
        }
        who->by_session = 1;
        memcpy(who->session_hash, hash, sizeof hash);
    }
    return 0;
}

int srv_auth_may_change(const srv_identity *who, const srv_run *run)
{
    if (who->user.id == 0)
        return 0;
    return who->user.admin || (run->owner_id != 0 && run->owner_id == who->user.id);
}

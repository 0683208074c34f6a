/*
 * srv_throttle.h - failed guesses counted per client address (wrong
 * passwords at login, wrong API tokens), so that neither can be guessed at
 * the speed of the network: after
 * SRV_THROTTLE_FAILURES failures within SRV_THROTTLE_WINDOW seconds an
 * address is refused (429, Retry-After) until its oldest counted failure is
 * that old, whatever the password or token it then sends.  A successful
 * login clears its address (a request with a valid token does not: it would
 * let whoever holds one token reset the count between guesses).
 *
 * Memory is bounded: a fixed table of SRV_THROTTLE_SLOTS addresses; when it
 * is full, the address whose last failure is the oldest is forgotten (an
 * attacker with that many addresses could also spread its guesses over them).
 * Safe to call from any thread.
 */
#ifndef SRV_THROTTLE_H
#define SRV_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define SRV_THROTTLE_FAILURES 5
#define SRV_THROTTLE_WINDOW 600 /* seconds */
#define SRV_THROTTLE_SLOTS 4096

typedef struct srv_throttle srv_throttle;

/* NULL when out of memory. */
srv_throttle *srv_throttle_new(void);
void srv_throttle_free(srv_throttle *t);

/* The seconds address (any bytes, up to 16 are kept) must wait before it may
 * try again, 0 when it may try now.  now is in seconds (a monotonic clock). */
unsigned srv_throttle_wait(srv_throttle *t, const void *address, size_t len, int64_t now);
/* A failed attempt from address. */
void srv_throttle_failed(srv_throttle *t, const void *address, size_t len, int64_t now);
/* A successful one: its failures are forgotten. */
void srv_throttle_passed(srv_throttle *t, const void *address, size_t len);
/* Addresses currently remembered (for tests and the bound). */
size_t srv_throttle_count(srv_throttle *t);

#endif /* SRV_THROTTLE_H */

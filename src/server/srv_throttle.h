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
 * The failures are kept in the database (srv_store.h), so that every server
 * process sharing a PostgreSQL database counts the same guesses (a guesser
 * spreading its attempts over the servers behind one proxy gains nothing),
 * and a restart forgets none.  Their times are the servers' wall clocks, in
 * milliseconds: servers sharing a database need clocks that agree (NTP).
 *
 * The table is bounded: failures older than the window are removed with each
 * new one, and beyond SRV_THROTTLE_KEPT failures the oldest are forgotten (an
 * attacker with that many addresses could also spread its guesses over them).
 * A database error counts as no failure (the request then meets that error
 * where it needs the database).  Safe to call from any thread.
 */
#ifndef SRV_THROTTLE_H
#define SRV_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#include "srv_store.h"

#define SRV_THROTTLE_FAILURES 5
#define SRV_THROTTLE_WINDOW 600 /* seconds */
#define SRV_THROTTLE_KEPT (4096 * SRV_THROTTLE_FAILURES)

typedef struct srv_throttle srv_throttle;

/* Counts in store's database.  NULL when out of memory. */
srv_throttle *srv_throttle_new(srv_store *store);
void srv_throttle_free(srv_throttle *t);

/* The seconds address (any bytes, up to 16 are kept) must wait before it may
 * try again, 0 when it may try now.  now_ms: the wall clock (ms since the
 * epoch). */
unsigned srv_throttle_wait(srv_throttle *t, const void *address, size_t len, int64_t now_ms);
/* A failed attempt from address. */
void srv_throttle_failed(srv_throttle *t, const void *address, size_t len, int64_t now_ms);
/* A successful one: its failures are forgotten. */
void srv_throttle_passed(srv_throttle *t, const void *address, size_t len);

#endif /* SRV_THROTTLE_H */

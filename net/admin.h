/*
 * admin.h - the node's local admin socket: a ZeroMQ REP socket at
 * ipc://DATA_DIR/admin.sock that paxosctl talks to.  One request, one
 * reply, both text.  Only processes that can open the backing directory
 * can reach it (the directory is 0700).
 *
 * Requests (one line):  "status" | "link drop J" | "link heal J"
 * Replies start with "ok" or "error: <reason>".
 */
#ifndef PAXOSFS_ADMIN_H
#define PAXOSFS_ADMIN_H

#include <stddef.h>

#include <stdbool.h>

#define ADMIN_SOCKET_NAME "admin.sock"
#define ADMIN_MAX_REQUEST 256

/* Handle one request line; write the reply (NUL-terminated) into a
 * malloc'ed buffer *reply. */
typedef void (*admin_handler_fn)(void *arg, const char *request, char **reply);

typedef struct admin admin;

int admin_open(void *zmq_ctx, const char *data_dir, admin **out, char *err,
               size_t err_len);
void admin_close(admin *a);
/* The socket's ZMQ_FD, for the loop's poll: readable when the socket may
 * have requests; admin_serve drains it. */
int admin_fd(admin *a);
/* Serve pending requests (non-blocking, bounded).  True when it stopped
 * at the bound: more may be waiting, poll without blocking. */
bool admin_serve(admin *a, admin_handler_fn fn, void *arg);

/* Called by the handler: this request is answered later, with
 * admin_answer (its reply, if any, is dropped).  Meanwhile no request is
 * read (the socket is a REP: one at a time; others queue in ZeroMQ). */
void admin_defer(admin *a);
bool admin_waiting(const admin *a);
/* The answer to the deferred request.  0, -EALREADY (none waits) or a
 * ZeroMQ failure. */
int admin_answer(admin *a, const char *text);

/* Client side (paxosctl): send `request` to the node of `data_dir` and
 * wait up to timeout_ms for the reply (malloc'ed).  0 or negative errno. */
int admin_call(const char *data_dir, const char *request, int timeout_ms,
               char **reply);

#endif

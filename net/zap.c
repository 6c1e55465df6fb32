/*
 * zap.c - owns the ZAP (RFC 27) request/reply exchange with libzmq and the
 * admission policy described in zap.h.
 *
 * A request, as libzmq sends it (the REP socket strips the envelope):
 *
 *   frame meaning
 *   ----- -------------------------------------------------
 *       0 version, "1.0"
 *       1 request id, echoed in the reply
 *       2 domain ("paxosfs", see keys_set_server)
 *       3 peer address
 *       4 routing id
 *       5 mechanism: "NULL", "PLAIN" or "CURVE"
 *      6+ credentials: CURVE = one frame, the client's 32-byte public key
 *
 * The reply: version "1.0", request id, status code ("200", "400",
 * "500"), status text, user id, metadata (empty).
 *
 * Invariants:
 *   1. Every request received is answered exactly once (a REP socket
 *      cannot receive again before it replied), malformed ones included.
 *   2. A peer is admitted only by an exact match of mechanism and key;
 *      every other path through zap_decide refuses.
 *   3. Frames kept per request are bounded (ZAP_MAX_FRAMES); extra frames
 *      are drained up to ZAP_MAX_DRAIN, then the socket is declared broken
 *      (only libzmq itself writes to this socket, so that means a bug).
 */
#include "zap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 8
#define ZAP_MAX_DRAIN 1024

struct zap {
    void *socket;
    bool have_key;
    uint8_t cluster_public[KEYS_BINARY_BYTES];
    uint64_t rejections;
    uint64_t admissions;
};

int zap_open(void *zmq_ctx, const keys *k, zap **out)
{
    int linger_ms = 0;
    int rc;
    if (!zmq_ctx || !out)
        return -EINVAL;
    zap *z = calloc(1, sizeof *z);
    if (!z)
        return -ENOMEM;
    if (k) {
        z->have_key = true;
        memcpy(z->cluster_public, k->public_binary, KEYS_BINARY_BYTES);
    }
    z->socket = zmq_socket(zmq_ctx, ZMQ_REP);
    if (!z->socket) {
        rc = -errno;
        goto free_zap;
    }
    if (zmq_setsockopt(z->socket, ZMQ_LINGER, &linger_ms,
                       sizeof linger_ms) != 0 ||
        zmq_bind(z->socket, ZAP_ENDPOINT) != 0) {
        rc = -errno;
        goto close_socket;
    }
    *out = z;
    return 0;
close_socket:
    zmq_close(z->socket);
free_zap:
    free(z);
    return rc;
}

void *zap_socket(const zap *z)
{
    return z ? z->socket : NULL;
}

uint64_t zap_rejections(const zap *z)
{
    return z ? z->rejections : 0;
}

uint64_t zap_admissions(const zap *z)
{
    return z ? z->admissions : 0;
}

void zap_close(zap *z)
{
    if (!z)
        return;
    /* unbind first: zmq_close releases the inproc name only later, from
     * libzmq's reaper, and a new handler could not bind it meanwhile */
    zmq_unbind(z->socket, ZAP_ENDPOINT);
    zmq_close(z->socket);
    free(z);
}

static bool zap_frame_is(zmq_msg_t *f, const char *text)
{
    size_t n = strlen(text);
    return zmq_msg_size(f) == n && memcmp(zmq_msg_data(f), text, n) == 0;
}

/* The policy (zap.h).  Returns the status code and sets *text. */
static const char *zap_decide(const zap *z, zmq_msg_t *f, int n,
                              bool overflow, const char **text)
{
    if (overflow || n < 6 || !zap_frame_is(&f[0], "1.0")) {
        *text = "malformed ZAP request";
        return "500";
    }
    if (zap_frame_is(&f[5], "CURVE")) {
        if (!z->have_key) {
            *text = "no cluster key configured";
            return "400";
        }
        if (n != 7 || zmq_msg_size(&f[6]) != KEYS_BINARY_BYTES) {
            *text = "malformed CURVE credentials";
            return "500";
        }
        if (memcmp(zmq_msg_data(&f[6]), z->cluster_public,
                   KEYS_BINARY_BYTES) != 0) {
            *text = "not the cluster key";
            return "400";
        }
        *text = "OK";
        return "200";
    }
    if (zap_frame_is(&f[5], "NULL") && !z->have_key && n == 6) {
        *text = "OK";
        return "200";
    }
    *text = z->have_key ? "CURVE with the cluster key required"
                        : "mechanism not allowed";
    return "400";
}

static int zap_send(void *socket, const void *data, size_t len, bool more)
{
    int flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0);
    return zmq_send(socket, data, len, flags) < 0 ? -errno : 0;
}

static int zap_reply(zap *z, zmq_msg_t *f, int n, bool overflow)
{
    const char *text = "";
    const char *status = zap_decide(z, f, n, overflow, &text);
    bool ok = strcmp(status, "200") == 0;
    const void *id = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t id_len = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    const char *user = ok ? "paxosfs-peer" : "";
    int rc = zap_send(z->socket, "1.0", 3, true);
    if (!rc)
        rc = zap_send(z->socket, id, id_len, true);
    if (!rc)
        rc = zap_send(z->socket, status, 3, true);
    if (!rc)
        rc = zap_send(z->socket, text, strlen(text), true);
    if (!rc)
        rc = zap_send(z->socket, user, strlen(user), true);
    if (!rc)
        rc = zap_send(z->socket, "", 0, false);
    if (rc)
        return rc;
    if (ok)
        z->admissions++;
    else
        z->rejections++;
    return 0;
}

int zap_handle(zap *z)
{
    zmq_msg_t f[ZAP_MAX_FRAMES];
    int n = 0;
    bool overflow = false;
    int rc = 0;
    if (!z)
        return -EINVAL;
    zmq_msg_init(&f[0]);
    if (zmq_msg_recv(&f[0], z->socket, ZMQ_DONTWAIT) < 0) {
        rc = errno == EAGAIN ? -EAGAIN : -errno;
        zmq_msg_close(&f[0]);
        return rc;
    }
    n = 1;
    /* the rest of a multipart message is already here: no blocking */
    bool more = zmq_msg_more(&f[0]);
    for (int drained = 0; more; drained++) {
        if (drained >= ZAP_MAX_DRAIN) {
            rc = -EPROTO;   /* invariant 3 */
            goto close_frames;
        }
        zmq_msg_t extra;
        zmq_msg_t *dst = n < ZAP_MAX_FRAMES ? &f[n] : &extra;
        zmq_msg_init(dst);
        if (zmq_msg_recv(dst, z->socket, 0) < 0) {
            rc = -errno;
            zmq_msg_close(dst);
            goto close_frames;
        }
        more = zmq_msg_more(dst);
        if (dst == &extra) {
            zmq_msg_close(&extra);
            overflow = true;   /* too many frames: refused as malformed */
        } else {
            n++;
        }
    }
    rc = zap_reply(z, f, n, overflow);
close_frames:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return rc;
}

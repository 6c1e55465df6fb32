/*
 * transport.c - ZeroMQ ROUTER/DEALER messaging between paxosfs nodes (see
 * transport.h for the invariants).
 *
 * Sockets: ROUTER bound at this node's address receives [identity, frame];
 * the identity is ZeroMQ's, the sender is the `from` inside the frame
 * (every connection is authenticated by CURVE when the cluster is keyed,
 * and every key holder is a member).  One DEALER per peer connects to that
 * peer's ROUTER and reconnects by itself after the peer restarts.
 */
#include "transport.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "zap.h"

#define TRANSPORT_RECV_BATCH 1024     /* frames per transport_receive */
#define TRANSPORT_RECONNECT_MS 100
#define TRANSPORT_RECONNECT_MAX_MS 1000

typedef struct peer {
    net_peer_addr addr;
    void *dealer;                /* NULL for ourselves */
    transport_peer_stats st;
    uint64_t last_log_ms;
    uint64_t unlogged_drops;
} peer;

struct transport {
    uint32_t self_id;
    void *ctx;
    void *router;
    zap *zap;
    peer peers[TRANSPORT_MAX_PEERS];
    uint32_t n_peers;
    uint64_t unknown_drops;      /* frames that name no member */
    uint64_t last_unknown_log_ms;
};

int net_parse_peers(const char *spec, net_peer_addr *out, uint32_t cap,
                    uint32_t *n, char *err, size_t err_len)
{
    *n = 0;
    const char *p = spec;
    while (*p) {
        if (*n == cap) {
            snprintf(err, err_len, "at most %u peers", cap);
            return -EINVAL;
        }
        char *end = NULL;
        errno = 0;
        unsigned long id = strtoul(p, &end, 10);
        if (errno || end == p || *end != '=' || id == 0 || id > UINT32_MAX) {
            snprintf(err, err_len, "bad peer '%s': want ID=HOST:PORT", p);
            return -EINVAL;
        }
        const char *host = end + 1;
        const char *comma = strchr(host, ',');
        size_t item_len = comma ? (size_t)(comma - host) : strlen(host);
        const char *colon = NULL;
        for (const char *c = host; c < host + item_len; c++)
            if (*c == ':')
                colon = c;
        if (!colon || colon == host || (size_t)(colon - host) >= sizeof out->host) {
            snprintf(err, err_len, "bad peer address for %lu: want HOST:PORT", id);
            return -EINVAL;
        }
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (end != host + item_len || port == 0 || port > 65535) {
            snprintf(err, err_len, "bad port for peer %lu", id);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < *n; i++) {
            if (out[i].id == id) {
                snprintf(err, err_len, "peer id %lu given twice", id);
                return -EINVAL;
            }
        }
        net_peer_addr *a = &out[(*n)++];
        memset(a, 0, sizeof *a);
        a->id = (uint32_t)id;
        memcpy(a->host, host, (size_t)(colon - host));
        a->port = (uint16_t)port;
        p = comma ? comma + 1 : host + item_len;
    }
    if (*n == 0) {
        snprintf(err, err_len, "no peers given");
        return -EINVAL;
    }
    return 0;
}

static int set_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

static peer *find_peer(transport *t, uint32_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i].addr.id == id)
            return &t->peers[i];
    return NULL;
}

int transport_open(void *ctx, uint32_t self_id, const net_peer_addr *peers,
                   uint32_t n_peers, const keys *key, transport **out,
                   char *err, size_t err_len)
{
    if (n_peers > TRANSPORT_MAX_PEERS) {
        snprintf(err, err_len, "too many peers");
        return -EINVAL;
    }
    transport *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    t->self_id = self_id;
    t->ctx = ctx;
    int rc = 0;
    const net_peer_addr *me = NULL;
    for (uint32_t i = 0; i < n_peers; i++)
        if (peers[i].id == self_id)
            me = &peers[i];
    if (!me) {
        snprintf(err, err_len, "--peers does not name this node (%u)", self_id);
        rc = -EINVAL;
        goto fail;
    }
    if (key) {
        /* the handler must exist before any peer can connect: without one
         * libzmq admits every CURVE client */
        rc = zap_open(t->ctx, key, &t->zap);
        if (rc < 0) {
            snprintf(err, err_len, "cannot start the authentication handler: %s",
                     strerror(-rc));
            goto fail;
        }
    }
    char endpoint[300];
    t->router = zmq_socket(t->ctx, ZMQ_ROUTER);
    if (!t->router) {
        rc = -errno;
        snprintf(err, err_len, "cannot create the ROUTER socket");
        goto fail;
    }
    set_int(t->router, ZMQ_LINGER, 0);
    set_int(t->router, ZMQ_RCVHWM, TRANSPORT_SEND_HWM);
    rc = key ? keys_set_server(t->router, key) : 0;
    if (rc == 0) {
        snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", me->host, me->port);
        if (zmq_bind(t->router, endpoint) != 0)
            rc = -errno;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot listen on %s:%u: %s", me->host, me->port,
                 zmq_strerror(-rc));
        goto fail;
    }
    for (uint32_t i = 0; i < n_peers; i++) {
        peer *p = &t->peers[t->n_peers++];
        p->addr = peers[i];
        p->st.id = peers[i].id;
        if (peers[i].id == self_id)
            continue;
        p->dealer = zmq_socket(t->ctx, ZMQ_DEALER);
        if (!p->dealer) {
            rc = -errno;
            snprintf(err, err_len, "cannot create a DEALER socket");
            goto fail;
        }
        set_int(p->dealer, ZMQ_LINGER, 0);
        set_int(p->dealer, ZMQ_SNDHWM, TRANSPORT_SEND_HWM);
        set_int(p->dealer, ZMQ_RECONNECT_IVL, TRANSPORT_RECONNECT_MS);
        set_int(p->dealer, ZMQ_RECONNECT_IVL_MAX, TRANSPORT_RECONNECT_MAX_MS);
        /* queue only for peers we are connected to: a dead peer's backlog
         * would otherwise arrive stale after it restarts */
        set_int(p->dealer, ZMQ_IMMEDIATE, 1);
        rc = key ? keys_set_client(p->dealer, key) : 0;
        snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", p->addr.host, p->addr.port);
        if (rc == 0 && zmq_connect(p->dealer, endpoint) != 0)
            rc = -errno;
        if (rc < 0) {
            snprintf(err, err_len, "cannot connect to peer %u at %s: %s",
                     p->addr.id, endpoint, zmq_strerror(-rc));
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    transport_close(t);
    return rc < 0 ? rc : -EIO;
}

void transport_close(transport *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i].dealer)
            zmq_close(t->peers[i].dealer);
    if (t->router)
        zmq_close(t->router);
    if (t->zap)
        zap_close(t->zap);
    free(t);
}

static int socket_fd(void *socket)
{
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(socket, ZMQ_FD, &fd, &len) != 0)
        return -1;
    return fd;
}

int transport_poll_fds(transport *t, int *fds, int cap)
{
    int n = 0;
    if (n < cap)
        fds[n++] = socket_fd(t->router);
    if (t->zap && n < cap)
        fds[n++] = socket_fd(zap_socket(t->zap));
    return n;
}

static void note_drop(transport *t, peer *p, uint64_t now_ms, const char *why)
{
    if (!p) {
        t->unknown_drops++;
        if (now_ms - t->last_unknown_log_ms >= TRANSPORT_LOG_INTERVAL_MS) {
            t->last_unknown_log_ms = now_ms;
            fprintf(stderr, "paxosfs: node %u: dropped a frame: %s (%" PRIu64
                    " from unknown senders so far)\n", t->self_id, why,
                    t->unknown_drops);
        }
        return;
    }
    p->st.recv_dropped++;
    p->unlogged_drops++;
    if (now_ms - p->last_log_ms >= TRANSPORT_LOG_INTERVAL_MS) {
        p->last_log_ms = now_ms;
        fprintf(stderr, "paxosfs: node %u: dropped %" PRIu64 " frame(s) from "
                "peer %u: %s (%" PRIu64 " in all)\n", t->self_id,
                p->unlogged_drops, p->addr.id, why, p->st.recv_dropped);
        p->unlogged_drops = 0;
    }
}

/* A CHAIN_HEAD frame: checked like any frame, then handed to head_fn. */
static void receive_head(transport *t, const uint8_t *buf, size_t len,
                         uint64_t now_ms, transport_head_fn head_fn, void *arg)
{
    wire_chain_head h;
    if (wire_decode_chain_head(buf, len, &h) < 0) {
        note_drop(t, NULL, now_ms, "malformed chain head");
        return;
    }
    peer *p = find_peer(t, h.from);
    if (!p || h.from == t->self_id) {
        note_drop(t, NULL, now_ms, "sender is not a member");
    } else if (p->st.blocked) {
        note_drop(t, p, now_ms, "link blocked");
    } else {
        p->st.received++;
        p->st.last_recv_ms = now_ms;
        head_fn(arg, h.from, h.index, h.hash);
    }
}

static void receive_one(transport *t, zmq_msg_t *frame, uint64_t now_ms,
                        transport_recv_fn fn, transport_head_fn head_fn,
                        void *arg)
{
    const uint8_t *buf = zmq_msg_data(frame);
    size_t len = zmq_msg_size(frame);
    wire_header hdr;
    if (wire_peek(buf, len, &hdr) == 0 && hdr.kind == WIRE_CHAIN_HEAD) {
        receive_head(t, buf, len, now_ms, head_fn, arg);
        return;
    }
    wire_decoded d;
    int rc = wire_decode_paxos(buf, len, &d);
    if (rc < 0) {
        note_drop(t, NULL, now_ms, rc == -EPROTO ? "bad header"
                  : rc == -EMSGSIZE ? "over a size limit" : "malformed");
        return;
    }
    const px_msg *m = &d.msg;
    peer *p = find_peer(t, m->from);
    if (!p || m->from == t->self_id) {
        note_drop(t, NULL, now_ms, "sender is not a member");
    } else if (m->to != t->self_id) {
        note_drop(t, p, now_ms, "addressed to another node");
    } else if (p->st.blocked) {
        note_drop(t, p, now_ms, "link blocked");
    } else {
        p->st.received++;
        p->st.last_recv_ms = now_ms;
        p->st.last_commit = m->commit;
        fn(arg, m);
    }
    wire_decoded_free(&d);
}

bool transport_receive(transport *t, unsigned which, uint64_t now_ms,
                       transport_recv_fn fn, transport_head_fn head_fn,
                       void *arg)
{
    bool more_zap = t->zap && (which & TRANSPORT_ZAP);
    for (int i = 0; more_zap && i < 64; i++) {
        if (zap_handle(t->zap) == -EAGAIN)
            more_zap = false;   /* drained (a malformed request is not) */
    }
    if (!(which & TRANSPORT_ROUTER))
        return more_zap;
    for (int i = 0; i < TRANSPORT_RECV_BATCH; i++) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, t->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return more_zap;    /* the ROUTER is drained */
        }
        /* [identity, frame]: skip to the last part */
        int more = zmq_msg_more(&part);
        int parts = 1;
        while (more) {
            zmq_msg_close(&part);
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, t->router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&part);
                return true;    /* a torn multipart: look again */
            }
            more = zmq_msg_more(&part);
            parts++;
        }
        if (parts == 2)
            receive_one(t, &part, now_ms, fn, head_fn, arg);
        else
            note_drop(t, NULL, now_ms, "unexpected number of parts");
        zmq_msg_close(&part);
    }
    return true;   /* the batch bound: more may be waiting */
}

int transport_send_frame(transport *t, uint32_t to, const uint8_t *frame,
                         size_t len)
{
    peer *p = find_peer(t, to);
    if (!p || !p->dealer)
        return -EINVAL;
    if (p->st.blocked) {
        p->st.send_dropped++;
        return -ECONNREFUSED;
    }
    if (zmq_send(p->dealer, frame, len, ZMQ_DONTWAIT) < 0) {
        p->st.send_dropped++;
        return -errno;
    }
    p->st.sent++;
    return 0;
}

int transport_send(transport *t, const px_msg *m)
{
    uint8_t *frame = NULL;
    size_t len = 0;
    int rc = wire_encode_paxos(m, &frame, &len);
    if (rc < 0)
        return rc;
    rc = transport_send_frame(t, m->to, frame, len);
    free(frame);
    return rc;
}

void transport_send_chain_head(transport *t, uint64_t index,
                               const uint8_t hash[PX_HASH_BYTES])
{
    wire_chain_head h = { .from = t->self_id, .index = index };
    memcpy(h.hash, hash, PX_HASH_BYTES);
    uint8_t frame[WIRE_HEADER_BYTES + 64];
    size_t len = 0;
    if (wire_encode_chain_head_into(&h, frame, sizeof frame, &len) < 0)
        return;
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i].dealer)
            transport_send_frame(t, t->peers[i].addr.id, frame, len);
}

int transport_block(transport *t, uint32_t id, bool blocked)
{
    peer *p = find_peer(t, id);
    if (!p || id == t->self_id)
        return -ENOENT;
    p->st.blocked = blocked;
    return 0;
}

uint32_t transport_peer_count(const transport *t)
{
    return t->n_peers;
}

void transport_peer_stats_get(const transport *t, uint32_t i,
                              transport_peer_stats *st)
{
    *st = t->peers[i].st;
}

uint64_t transport_unknown_drops(const transport *t)
{
    return t->unknown_drops;
}

uint64_t transport_rejected_connections(const transport *t)
{
    return t->zap ? zap_rejections(t->zap) : 0;
}

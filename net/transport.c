/*
 * transport.c - ZeroMQ ROUTER/DEALER messaging between paxosfs nodes (see
 * transport.h for the invariants).
 *
 * Sockets: ROUTER bound at this node's address receives [identity, piece]
 * (frames travel in pieces, wire.h; the pieces of one connection are
 * joined per identity); the identity is ZeroMQ's, the sender is the
 * `from` inside the frame (every connection is authenticated by CURVE
 * when the cluster is keyed, and every key holder is a member).  One
 * DEALER per peer connects to that peer's ROUTER and reconnects by itself
 * after the peer restarts.  A PAIR socket receives the ROUTER's
 * connection events (invariant 5).
 */
#include "transport_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "zap.h"

#define TRANSPORT_RECV_BATCH 1024     /* pieces per transport_receive */
#define TRANSPORT_RECV_BATCH_BYTES (2u << 20) /* and bytes: one call never
                                   takes long, so the loop's timers (the
                                   leader's heartbeats) run between floods
                                   of large frames */
#define TRANSPORT_RECONNECT_MS 100
#define TRANSPORT_RECONNECT_MAX_MS 1000


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

/* Invariant 4, for every socket that talks TCP. */
static void set_bounds(void *s)
{
    int64_t max = TRANSPORT_MAX_MSG_BYTES;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    set_int(s, ZMQ_HANDSHAKE_IVL, TRANSPORT_HANDSHAKE_MS);
}

/* Watch the ROUTER's connections (invariant 5): a PAIR socket receives
 * libzmq's events for it. */
static int open_monitor(transport *t)
{
    char endpoint[80];   /* one per transport, even within one context */
    snprintf(endpoint, sizeof endpoint, "%s-%u-%p", TRANSPORT_MONITOR_ENDPOINT,
             t->self_id, (void *)t);
    if (zmq_socket_monitor(t->router, endpoint, TRANSPORT_MONITOR_EVENTS) != 0)
        return -errno;
    t->monitor = zmq_socket(t->ctx, ZMQ_PAIR);
    if (!t->monitor)
        return -errno;
    set_int(t->monitor, ZMQ_LINGER, 0);
    set_int(t->monitor, ZMQ_RCVHWM, TRANSPORT_MONITOR_HWM);
    if (zmq_connect(t->monitor, endpoint) != 0)
        return -errno;
    return 0;
}

static peer *find_peer(transport *t, uint32_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i].addr.id == id)
            return &t->peers[i];
    return NULL;
}

/* A DEALER to `p`'s ROUTER, configured as every one (invariants 1, 4). */
static int peer_connect(transport *t, peer *p, char *err, size_t err_len)
{
    char endpoint[300];
    p->dealer = zmq_socket(t->ctx, ZMQ_DEALER);
    if (!p->dealer) {
        int e = errno;
        snprintf(err, err_len, "cannot create a DEALER socket");
        return -e;
    }
    set_int(p->dealer, ZMQ_LINGER, 0);
    set_int(p->dealer, ZMQ_SNDHWM, TRANSPORT_SEND_HWM);
    set_int(p->dealer, ZMQ_RECONNECT_IVL, TRANSPORT_RECONNECT_MS);
    set_int(p->dealer, ZMQ_RECONNECT_IVL_MAX, TRANSPORT_RECONNECT_MAX_MS);
    /* queue only for peers we are connected to: a dead peer's backlog
     * would otherwise arrive stale after it restarts */
    set_int(p->dealer, ZMQ_IMMEDIATE, 1);
    set_bounds(p->dealer);
    int rc = t->key ? keys_set_client(p->dealer, t->key) : 0;
    snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", p->addr.host, p->addr.port);
    if (rc == 0 && zmq_connect(p->dealer, endpoint) != 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, err_len, "cannot connect to peer %u at %s: %s",
                 p->addr.id, endpoint, zmq_strerror(-rc));
        zmq_close(p->dealer);
        p->dealer = NULL;
    }
    return rc;
}

int transport_add_peer(transport *t, const net_peer_addr *a, char *err,
                       size_t err_len)
{
    peer *old = find_peer(t, a->id);
    if (old) {
        if (strcmp(old->addr.host, a->host) == 0 && old->addr.port == a->port)
            return -EEXIST;
        snprintf(err, err_len, "peer %u is already at %s:%u", a->id,
                 old->addr.host, old->addr.port);
        return -EEXIST;
    }
    if (t->n_peers == TRANSPORT_MAX_PEERS) {
        snprintf(err, err_len, "at most %d members", TRANSPORT_MAX_PEERS);
        return -ENOSPC;
    }
    if (a->id == 0 || !a->host[0] || a->port == 0) {
        snprintf(err, err_len, "bad peer address for %u", a->id);
        return -EINVAL;
    }
    peer *p = &t->peers[t->n_peers];
    memset(p, 0, sizeof *p);
    p->addr = *a;
    p->st.id = a->id;
    if (a->id != t->self_id) {
        int rc = peer_connect(t, p, err, err_len);
        if (rc < 0)
            return rc;
    }
    t->n_peers++;
    return 0;
}

int transport_remove_peer(transport *t, uint32_t id)
{
    peer *p = find_peer(t, id);
    if (!p || id == t->self_id)
        return -ENOENT;
    if (p->dealer)
        zmq_close(p->dealer);   /* ZMQ_LINGER 0: its queue goes with it */
    uint32_t i = (uint32_t)(p - t->peers);
    memmove(&t->peers[i], &t->peers[i + 1],
            (t->n_peers - i - 1) * sizeof t->peers[0]);
    t->n_peers--;
    memset(&t->peers[t->n_peers], 0, sizeof t->peers[0]);
    t->removed++;
    return 0;
}

uint64_t transport_removed_peers(const transport *t)
{
    return t->removed;
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
    t->key = key;
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
    set_int(t->router, ZMQ_RCVHWM, TRANSPORT_RECV_HWM);
    set_bounds(t->router);
    rc = open_monitor(t);
    if (rc < 0) {
        snprintf(err, err_len, "cannot monitor the ROUTER socket: %s",
                 zmq_strerror(-rc));
        goto fail;
    }
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
        rc = transport_add_peer(t, &peers[i], err, err_len);
        if (rc < 0)
            goto fail;
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
    if (t->router) {
        if (t->monitor)
            zmq_socket_monitor(t->router, NULL, 0);
        zmq_close(t->router);
    }
    if (t->monitor)
        zmq_close(t->monitor);
    if (t->zap)
        zap_close(t->zap);
    free(t->conn);
    for (uint32_t i = 0; i < TRANSPORT_REASM_SLOTS; i++)
        free(t->reasm[i].buf);
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
    void *socks[TRANSPORT_POLL_FDS] = { t->router, zap_socket(t->zap),
                                        t->monitor };
    for (int k = POLL_ROUTER; k <= POLL_MONITOR && n < cap; k++) {
        if (!socks[k])
            continue;
        t->poll_kind[n] = k;
        fds[n++] = socket_fd(socks[k]);
    }
    t->n_poll = n;
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

void transport_set_snapshot_handler(transport *t, transport_snap_fn fn,
                                    void *arg)
{
    t->snap_fn = fn;
    t->snap_arg = arg;
}

/* A SNAPSHOT or SNAPSHOT_ASK frame: checked like any frame, then handed
 * to the snapshot handler. */
static void receive_snap(transport *t, const uint8_t *buf, size_t len,
                         uint8_t kind, uint64_t now_ms)
{
    wire_snapshot chunk;
    wire_snapshot_ask ask;
    uint32_t from, to;
    int rc;
    if (kind == WIRE_SNAPSHOT) {
        rc = wire_decode_snapshot(buf, len, &chunk);
        from = chunk.from;
        to = chunk.to;
    } else {
        rc = wire_decode_snapshot_ask(buf, len, &ask);
        from = ask.from;
        to = ask.to;
    }
    if (rc < 0) {
        note_drop(t, NULL, now_ms, rc == -EMSGSIZE ? "snapshot frame over "
                  "a size limit" : "malformed snapshot frame");
        return;
    }
    peer *p = find_peer(t, from);
    if (!p || from == t->self_id) {
        note_drop(t, NULL, now_ms, "sender is not a member");
    } else if (to != t->self_id) {
        note_drop(t, p, now_ms, "addressed to another node");
    } else if (p->st.blocked) {
        note_drop(t, p, now_ms, "link blocked");
    } else if (!t->snap_fn) {
        note_drop(t, p, now_ms, "snapshot frame, no transfer here");
    } else {
        p->st.received++;
        p->st.last_recv_ms = now_ms;
        t->snap_fn(t->snap_arg, from, kind == WIRE_SNAPSHOT ? &chunk : NULL,
                   kind == WIRE_SNAPSHOT ? NULL : &ask);
    }
}

void transport_set_member_handler(transport *t, transport_member_fn fn,
                                  void *arg)
{
    t->member_fn = fn;
    t->member_arg = arg;
}

/* A MEMBER frame: checked like any frame, then handed to the handler. */
static void receive_member(transport *t, const uint8_t *buf, size_t len,
                           uint64_t now_ms)
{
    wire_member m;
    int rc = wire_decode_member(buf, len, &m);
    if (rc < 0) {
        note_drop(t, NULL, now_ms, "malformed membership frame");
        return;
    }
    peer *p = find_peer(t, m.from);
    if (!p && m.answer == WIRE_MEMBER_ANNOUNCE && m.from != t->self_id &&
        m.to == t->self_id && t->member_fn) {
        /* a member of a configuration this node has not learned yet says
         * where it is: the node decides (node/members.c) */
        t->member_fn(t->member_arg, &m);
    } else if (!p || m.from == t->self_id) {
        note_drop(t, NULL, now_ms, "sender is not a member");
    } else if (m.to != t->self_id) {
        note_drop(t, p, now_ms, "addressed to another node");
    } else if (p->st.blocked) {
        note_drop(t, p, now_ms, "link blocked");
    } else if (!t->member_fn) {
        note_drop(t, p, now_ms, "membership frame, no handler here");
    } else {
        p->st.received++;
        p->st.last_recv_ms = now_ms;
        t->member_fn(t->member_arg, &m);
    }
}

static void receive_one(transport *t, const uint8_t *buf, size_t len,
                        uint64_t now_ms, transport_recv_fn fn,
                        transport_head_fn head_fn, void *arg)
{
    wire_header hdr;
    if (wire_peek(buf, len, &hdr) == 0 && hdr.kind == WIRE_MEMBER) {
        receive_member(t, buf, len, now_ms);
        return;
    }
    if (wire_peek(buf, len, &hdr) == 0 && hdr.kind == WIRE_CHAIN_HEAD) {
        receive_head(t, buf, len, now_ms, head_fn, arg);
        return;
    }
    if (wire_peek(buf, len, &hdr) == 0 && (hdr.kind == WIRE_SNAPSHOT ||
                                           hdr.kind == WIRE_SNAPSHOT_ASK)) {
        receive_snap(t, buf, len, hdr.kind, now_ms);
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
        if (m->type != PX_MSG_CATCHUP_REQ ||
            transport_catchup_admit(t, m->from, now_ms, m->slot, m->commit))
            fn(arg, m);     /* else refused and counted (invariant 6) */
    }
    wire_decoded_free(&d);
}

/* ------------------------------------------------------------ frames */

/* Frames of several pieces being joined, one per connection (wire.h).  A
 * slot keeps its buffer when its frame is done: the next large frame
 * reuses it instead of touching fresh pages (on these virtual machines a
 * first touch costs more than the copy).  Buffers, in use or kept, take
 * at most TRANSPORT_REASM_BYTES. */
_Static_assert(WIRE_MAX_FRAME <= TRANSPORT_REASM_BYTES,
               "a frame of the largest size must fit");

static reasm *reasm_find(transport *t, const uint8_t *id, size_t id_len)
{
    for (uint32_t i = 0; i < TRANSPORT_REASM_SLOTS; i++) {
        reasm *r = &t->reasm[i];
        if (r->active && r->id_len == id_len && memcmp(r->id, id, id_len) == 0)
            return r;
    }
    return NULL;
}

static void reasm_drop(transport *t, reasm *r)
{
    if (r->active)
        t->reasm_active--;
    r->active = false;
    r->total = r->len = 0;
}

static void reasm_release(transport *t, reasm *r)
{
    t->reasm_bytes -= r->cap;
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

/* Room for a frame of `total` bytes from connection `id`: an idle slot
 * (one whose buffer fits first), within TRANSPORT_REASM_BYTES, made by
 * releasing idle buffers and then dropping the frames that progressed
 * least recently (each a counted drop). */
static reasm *reasm_start(transport *t, const uint8_t *id, size_t id_len,
                          size_t total, uint64_t now_ms)
{
    for (;;) {
        reasm *fits = NULL, *idle = NULL, *oldest = NULL;
        for (uint32_t i = 0; i < TRANSPORT_REASM_SLOTS; i++) {
            reasm *r = &t->reasm[i];
            if (r->active) {
                if (!oldest || r->seq < oldest->seq)
                    oldest = r;
            } else if (r->cap >= total) {
                if (!fits || r->cap < fits->cap)
                    fits = r;
            } else if (!idle || r->cap > idle->cap) {
                idle = r;    /* the one that grows least */
            }
        }
        reasm *r = fits;
        if (!r && idle && t->reasm_bytes - idle->cap + total <=
                              TRANSPORT_REASM_BYTES) {
            reasm_release(t, idle);
            idle->buf = malloc(total);
            if (!idle->buf)
                return NULL;
            idle->cap = total;
            t->reasm_bytes += total;
            r = idle;
        }
        if (r) {
            memcpy(r->id, id, id_len);
            r->id_len = id_len;
            r->total = total;
            r->len = 0;
            r->active = true;
            t->reasm_active++;
            return r;
        }
        /* make room: an idle buffer first, else the stalest frame */
        reasm *victim = NULL;
        for (uint32_t i = 0; i < TRANSPORT_REASM_SLOTS && !victim; i++)
            if (!t->reasm[i].active && t->reasm[i].cap)
                victim = &t->reasm[i];
        if (victim) {
            reasm_release(t, victim);
            continue;
        }
        if (!oldest)
            return NULL;
        note_drop(t, NULL, now_ms, "a frame in pieces made room for another");
        reasm_drop(t, oldest);
    }
}

/* One piece [flags, bytes] from connection `id` (wire.h). */
static void receive_piece(transport *t, const uint8_t *id, size_t id_len,
                          zmq_msg_t *piece, uint64_t now_ms,
                          transport_recv_fn fn, transport_head_fn head_fn,
                          void *arg)
{
    const uint8_t *data = zmq_msg_data(piece);
    size_t size = zmq_msg_size(piece);
    if (size < 1 || (data[0] & ~(WIRE_PIECE_FIRST | WIRE_PIECE_LAST)) ||
        size - 1 > WIRE_PART_BYTES) {
        note_drop(t, NULL, now_ms, "not a piece of a frame");
        return;
    }
    uint8_t flags = data[0];
    data++;
    size--;
    reasm *r = t->reasm_active ? reasm_find(t, id, id_len) : NULL;
    if (r && (flags & WIRE_PIECE_FIRST)) {
        /* the sender dropped the rest of that frame (its queue was full) */
        note_drop(t, NULL, now_ms, "a frame's pieces stopped short");
        reasm_drop(t, r);
        r = NULL;
    }
    if (flags == (WIRE_PIECE_FIRST | WIRE_PIECE_LAST)) {
        receive_one(t, data, size, now_ms, fn, head_fn, arg);   /* no copy */
        return;
    }
    if (flags & WIRE_PIECE_FIRST) {
        size_t total = 0;
        int rc = wire_frame_size(data, size, &total);
        if (rc < 0 || total <= size || size != WIRE_PART_BYTES) {
            note_drop(t, NULL, now_ms, rc < 0 ? "bad header" :
                      "a frame's pieces do not match its size");
            return;
        }
        r = reasm_start(t, id, id_len, total, now_ms);
        if (!r) {
            note_drop(t, NULL, now_ms, "no room to join a frame's pieces");
            return;
        }
    } else if (!r) {
        note_drop(t, NULL, now_ms, "a piece without the start of its frame");
        return;
    }
    bool last = flags & WIRE_PIECE_LAST;
    if (size > r->total - r->len || (!last && size != WIRE_PART_BYTES) ||
        (last && r->len + size != r->total)) {
        note_drop(t, NULL, now_ms, "a frame's pieces do not match its size");
        reasm_drop(t, r);
        return;
    }
    memcpy(r->buf + r->len, data, size);
    r->len += size;
    r->seq = ++t->reasm_seq;
    if (!last)
        return;
    size_t len = r->len;
    reasm_drop(t, r);           /* idle again; the buffer stays */
    receive_one(t, r->buf, len, now_ms, fn, head_fn, arg);
}

/* Drain the ROUTER: [identity, piece] per message.  True when it stopped
 * at the batch bound. */
static bool receive_router(transport *t, uint64_t now_ms, transport_recv_fn fn,
                           transport_head_fn head_fn, void *arg)
{
    size_t bytes = 0;
    for (int i = 0; i < TRANSPORT_RECV_BATCH &&
                    bytes < TRANSPORT_RECV_BATCH_BYTES; i++) {
        zmq_msg_t id, piece;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, t->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return false;    /* the ROUTER is drained */
        }
        bool more = zmq_msg_more(&id);
        if (!more) {
            zmq_msg_close(&id);
            note_drop(t, NULL, now_ms, "unexpected number of parts");
            continue;
        }
        zmq_msg_init(&piece);
        if (zmq_msg_recv(&piece, t->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&piece);
            zmq_msg_close(&id);
            return true;     /* a torn multipart: look again */
        }
        if (t->unplaced_ups || t->in_handshake)
            transport_conn_seen(t, zmq_msg_get(&piece, ZMQ_SRCFD));
        bytes += zmq_msg_size(&piece);
        if (zmq_msg_more(&piece)) {
            note_drop(t, NULL, now_ms, "unexpected number of parts");
            while (zmq_msg_more(&piece)) {
                zmq_msg_close(&piece);
                zmq_msg_init(&piece);
                if (zmq_msg_recv(&piece, t->router, ZMQ_DONTWAIT) < 0)
                    break;
            }
        } else if (zmq_msg_size(&id) <= sizeof t->reasm[0].id) {
            receive_piece(t, zmq_msg_data(&id), zmq_msg_size(&id), &piece,
                          now_ms, fn, head_fn, arg);
        }
        zmq_msg_close(&piece);
        zmq_msg_close(&id);
    }
    return true;   /* the batch bound: more may be waiting */
}

bool transport_receive(transport *t, unsigned which, uint64_t now_ms,
                       transport_recv_fn fn, transport_head_fn head_fn,
                       void *arg)
{
    bool more = false;
    unsigned want = 0;
    for (int i = 0; i < t->n_poll; i++)
        if (which & (1u << i))
            want |= 1u << t->poll_kind[i];
    if (t->zap && (want & (1u << POLL_ZAP))) {
        int i = 0;
        while (i < 64 && zap_handle(t->zap) != -EAGAIN)
            i++;            /* a malformed request does not stop it */
        more |= i == 64;
    }
    /* events before frames: a frame may tie a finished handshake to its
     * connection only once the connection is known */
    if (t->monitor && (want & (1u << POLL_MONITOR))) {
        int i = 0;
        while (i < TRANSPORT_MONITOR_BATCH && transport_monitor_one(t, now_ms))
            i++;
        more |= i == TRANSPORT_MONITOR_BATCH;
    }
    if (want & (1u << POLL_ROUTER))
        more |= receive_router(t, now_ms, fn, head_fn, arg);
    return more;
}

/* Send one frame in pieces (wire.h). */
static int send_pieces(void *dealer, const uint8_t *frame, size_t len)
{
    size_t off = 0;
    do {
        size_t n = len - off > WIRE_PART_BYTES ? WIRE_PART_BYTES : len - off;
        zmq_msg_t piece;
        if (zmq_msg_init_size(&piece, n + 1) != 0)
            return -ENOMEM;
        uint8_t *p = zmq_msg_data(&piece);
        p[0] = (uint8_t)((off == 0 ? WIRE_PIECE_FIRST : 0) |
                         (off + n == len ? WIRE_PIECE_LAST : 0));
        memcpy(p + 1, frame + off, n);
        if (zmq_msg_send(&piece, dealer, ZMQ_DONTWAIT) < 0) {
            /* the queue is full: a frame cut short is dropped by the
             * receiver when the next one starts */
            int rc = -errno;
            zmq_msg_close(&piece);
            return rc;
        }
        off += n;
    } while (off < len);
    return 0;
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
    int rc = send_pieces(p->dealer, frame, len);
    if (rc < 0) {
        p->st.send_dropped++;
        return rc;
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
    if (rc == 0 && m->type == PX_MSG_CATCHUP)
        transport_catchup_charge(t, m->to, len);   /* invariant 6 */
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

bool transport_catchup_admit(transport *t, uint32_t id, uint64_t now_ms,
                             uint64_t slot, uint64_t commit)
{
    peer *p = find_peer(t, id);
    if (!p || !p->dealer)
        return false;
    if (p->catchup_refill_ms == 0) {
        p->catchup_tokens = TRANSPORT_CATCHUP_BURST;
    } else if (now_ms > p->catchup_refill_ms) {
        uint64_t add = (now_ms - p->catchup_refill_ms) *
                       (uint64_t)TRANSPORT_CATCHUP_RATE / 1000;
        if (add > TRANSPORT_CATCHUP_BURST)
            add = TRANSPORT_CATCHUP_BURST;
        p->catchup_tokens += (int64_t)add;
        if (p->catchup_tokens > (int64_t)TRANSPORT_CATCHUP_BURST)
            p->catchup_tokens = TRANSPORT_CATCHUP_BURST;
    }
    if (now_ms > p->catchup_refill_ms || p->catchup_refill_ms == 0)
        p->catchup_refill_ms = now_ms ? now_ms : 1;
    bool repeat = p->st.catchup_served && slot == p->catchup_last_slot &&
                  commit == p->catchup_last_commit &&
                  now_ms - p->catchup_last_ms < TRANSPORT_CATCHUP_REPEAT_MS;
    if (repeat || p->catchup_tokens <= 0) {
        p->st.catchup_dropped++;
        if (now_ms - p->catchup_log_ms >= TRANSPORT_LOG_INTERVAL_MS) {
            p->catchup_log_ms = now_ms;
            fprintf(stderr, "paxosfs: node %u: not serving catch-up to peer "
                    "%u: %s (%" PRIu64 " refused so far)\n", t->self_id, id,
                    repeat ? "a repeated request" : "over its byte budget",
                    p->st.catchup_dropped);
        }
        return false;
    }
    p->st.catchup_served++;
    p->catchup_last_ms = now_ms;
    p->catchup_last_slot = slot;
    p->catchup_last_commit = commit;
    return true;
}

void transport_catchup_charge(transport *t, uint32_t id, uint64_t bytes)
{
    peer *p = find_peer(t, id);
    if (!p)
        return;
    p->st.catchup_bytes += bytes;
    p->catchup_tokens -= bytes > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)bytes;
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

void transport_conn_stats_get(const transport *t, transport_conn_stats *st)
{
    *st = t->conns;
}

uint64_t transport_rejected_connections(const transport *t)
{
    return t->conns.rejected;
}

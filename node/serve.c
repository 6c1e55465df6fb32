/*
 * serve.c - owns a node's endpoint for client-only mounts (see serve.h):
 * the ROUTER, the subscribers, the ring of recent changes, the writes
 * received this turn and the reads in flight.
 */
#include "serve.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "../net/wire_mount.h"
#include "node_int.h"
#include "reads.h"

#define SERVE_RECV_BATCH 256
#define SERVE_MAX_PROPOSALS 4096
#define SERVE_ID_MAX 255
#define SERVE_LOG_MS 10000

typedef struct sub {
    bool used;
    bool alive;              /* invariant 3: false once a send failed */
    uint8_t id_len;
    uint8_t id[SERVE_ID_MAX];
    uint64_t client_id;
    uint64_t last_ms;        /* last request */
    uint64_t beat_ms;        /* last BEAT */
    uint64_t skip_to;        /* it knows the changes up to here already */
} sub;

typedef struct change {
    uint64_t index;
    uint32_t len;
    char *key;
} change;

/* A read in flight: where its answer goes. */
typedef struct pending_read {
    serve *s;
    uint8_t op;
    uint8_t id_len;
    uint64_t rid;
    uint8_t id[SERVE_ID_MAX];
} pending_read;

struct serve {
    node *n;
    fs_backend be;
    void *router;
    sub subs[SERVE_MAX_CLIENTS];
    change *ring;            /* ring_cap slots, [ring_start, +ring_n) */
    uint32_t ring_cap;
    uint32_t ring_start, ring_n;
    size_t ring_bytes;
    uint64_t ring_floor;     /* every change of an index above it is kept */
    px_request props[SERVE_MAX_PROPOSALS];
    uint32_t n_props;
    uint32_t reads;          /* in flight */
    uint8_t *buf;            /* encoding buffer */
    size_t buf_cap;
    /* counters for .status */
    uint64_t malformed, unsubscribed, refused, dropped_subs, gaps;
    uint64_t writes, reads_served, resumed;
    uint64_t last_log_ms;
};

/* ------------------------------------------------------------ sending */

static sub *find_sub(serve *s, const uint8_t *id, size_t id_len)
{
    for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
        if (s->subs[i].used && s->subs[i].id_len == id_len &&
            memcmp(s->subs[i].id, id, id_len) == 0)
            return &s->subs[i];
    return NULL;
}

/* Encode `m` and send it to routing id `id`.  A send that fails ends the
 * subscription (invariant 3). */
static void send_msg(serve *s, const uint8_t *id, size_t id_len,
                     const wire_mount_msg *m)
{
    size_t need = wire_mount_msg_size(m);
    if (need == 0) {   /* a bug here, not the client's: say so */
        fprintf(stderr, "paxosfs: node %u: a client message (op %u) does not "
                "encode\n", s->n->cfg.id, m->op);
        return;
    }
    if (need > s->buf_cap) {
        uint8_t *b = realloc(s->buf, need);
        if (!b)
            goto failed;
        s->buf = b;
        s->buf_cap = need;
    }
    size_t len;
    if (wire_encode_mount_msg_into(m, s->buf, s->buf_cap, &len) < 0)
        return;
    if (zmq_send(s->router, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        goto failed;
    if (zmq_send(s->router, s->buf, len, ZMQ_DONTWAIT) < 0)
        goto failed;
    return;
failed:;
    sub *u = find_sub(s, id, id_len);
    if (u && u->alive) {
        u->alive = false;
        s->dropped_subs++;
    }
}

static void send_sub(serve *s, sub *u, const wire_mount_msg *m)
{
    if (u->alive)
        send_msg(s, u->id, u->id_len, m);
}

static void meta_of(const fs_meta *f, wire_mount_meta *w)
{
    *w = (wire_mount_meta){ .ident = f->ident, .version = f->version,
                            .mtime_ms = f->mtime_ms, .len = f->len,
                            .uid = f->uid, .gid = f->gid, .mode = f->mode };
}

static void send_beat(serve *s, sub *u, uint32_t flags, uint64_t now_ms)
{
    px_status st;
    px_get_status(s->n->px, &st);
    /* what be.can_write says, without counting a refusal */
    int cw = s->n->fatal ? health_client_errno(s->n->fatal)
           : s->n->no_leader ? -EHOSTUNREACH : 0;
    wire_mount_msg m = {
        .op = WIRE_MOUNT_BEAT, .result = cw < 0 ? cw : 0,
        .a = kv_applied_index(s->n->state),
        .b = s->be.chain_head(s->be.ctx),
        .c = s->be.chain_base ? s->be.chain_base(s->be.ctx) : 0,
        .server = s->n->cfg.id, .leader = st.leader_id,
        .flags = flags | (cw < 0 ? WIRE_MOUNT_BEAT_NO_WRITES : 0),
    };
    u->beat_ms = now_ms;
    send_sub(s, u, &m);
}

/* ------------------------------------------------------------ changes */

static void send_changed(serve *s, sub *u, const char *key, size_t key_len,
                         uint64_t index)
{
    fs_meta now = { 0 };
    const kv_value *v = kv_get(s->n->state, key, key_len);
    if (v)
        reads_meta(v, &now);
    wire_mount_msg m = { .op = WIRE_MOUNT_CHANGED, .rid = index,
                         .len = (uint32_t)key_len,
                         .bytes = (const uint8_t *)key };
    meta_of(&now, &m.meta);
    send_sub(s, u, &m);
}

static void ring_drop_oldest(serve *s)
{
    change *c = &s->ring[s->ring_start];
    if (c->index > s->ring_floor)
        s->ring_floor = c->index;
    s->ring_bytes -= c->len;
    free(c->key);
    c->key = NULL;
    s->ring_start = (s->ring_start + 1) % s->ring_cap;
    s->ring_n--;
}

void serve_changed(serve *s, const char *key, size_t key_len,
                   const fs_meta *now, uint64_t index)
{
    (void)now;   /* what a client is told is read when it is sent */
    char *copy = malloc(key_len ? key_len : 1);
    while (s->ring_n && (s->ring_n == s->ring_cap ||
                         s->ring_bytes + key_len > SERVE_RING_BYTES))
        ring_drop_oldest(s);
    if (copy) {
        memcpy(copy, key, key_len);
        change *c = &s->ring[(s->ring_start + s->ring_n) % s->ring_cap];
        *c = (change){ .index = index, .len = (uint32_t)key_len, .key = copy };
        s->ring_n++;
        s->ring_bytes += key_len;
    } else if (index > s->ring_floor) {
        s->ring_floor = index;   /* a resume from before cannot replay it */
    }
    for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
        if (s->subs[i].used && s->subs[i].alive && index > s->subs[i].skip_to)
            send_changed(s, &s->subs[i], key, key_len, index);
}

/* A client resumes after `since`: every key changed above it, with what
 * it holds now; false if the ring no longer reaches back that far.  A
 * node behind the client (it applied less than `since`) sends nothing of
 * what it applies up to `since`: the client knows newer values of those
 * keys, and being told older ones would take its inodes back in time. */
static bool replay(serve *s, sub *u, uint64_t since)
{
    if (since > kv_applied_index(s->n->state)) {
        u->skip_to = since;
        return true;
    }
    if (since < s->ring_floor)
        return false;
    for (uint32_t i = 0; i < s->ring_n; i++) {
        change *c = &s->ring[(s->ring_start + i) % s->ring_cap];
        if (c->index > since)
            send_changed(s, u, c->key, c->len, c->index);
    }
    return true;
}

/* ------------------------------------------------------------ results */

void serve_result(serve *s, uint64_t who, uint64_t seq, int32_t result)
{
    wire_mount_msg m = { .op = WIRE_MOUNT_DONE, .rid = seq,
                         .result = result > 0 ? 0 : result };
    if (m.result <= -4096)
        m.result = -EIO;
    for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
        if (s->subs[i].used && s->subs[i].client_id == who)
            send_sub(s, &s->subs[i], &m);
}

/* --------------------------------------------------------------- reads */

static pending_read *read_new(serve *s, const uint8_t *id, size_t id_len,
                              uint8_t op, uint64_t rid)
{
    pending_read *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    r->s = s;
    r->op = op;
    r->rid = rid;
    r->id_len = (uint8_t)id_len;
    memcpy(r->id, id, id_len);
    s->reads++;
    return r;
}

static void read_end(pending_read *r, const wire_mount_msg *m)
{
    serve *s = r->s;
    send_msg(s, r->id, r->id_len, m);
    s->reads--;
    s->reads_served++;
    free(r);
}

static void on_key(void *arg, int result, const fs_entry_view *view)
{
    pending_read *r = arg;
    wire_mount_msg m = { .op = WIRE_MOUNT_ENTRY, .rid = r->rid,
                         .result = result };
    if (result == 0 && view) {
        fs_meta meta = view->meta;
        meta_of(&meta, &m.meta);
        if (view->value) {
            m.len = view->value->len;
            m.bytes = view->value->data;
        }
    }
    read_end(r, &m);
}

static void on_page(void *arg, int result, const fs_dir_page *page)
{
    pending_read *r = arg;
    wire_mount_msg m = { .op = WIRE_MOUNT_PAGE, .rid = r->rid,
                         .result = result };
    uint8_t *rec = NULL;
    if (result == 0 && page) {
        size_t total = 0;
        uint32_t n = page->n < WIRE_MOUNT_PAGE_MAX ? page->n
                                                   : WIRE_MOUNT_PAGE_MAX;
        for (uint32_t i = 0; i < n; i++)
            total += wire_mount_record_size(page->entries[i].key_len);
        rec = malloc(total ? total : 1);
        if (!rec) {
            m.result = -ENOMEM;
        } else {
            uint8_t *p = rec;
            for (uint32_t i = 0; i < n; i++) {
                wire_mount_meta wm;
                meta_of(&page->entries[i].meta, &wm);
                wire_mount_put_record(&p, page->entries[i].key,
                                      (uint16_t)page->entries[i].key_len, &wm);
            }
            m.n = n;
            m.len = (uint32_t)total;
            m.bytes = rec;
            m.flags = page->more || n < page->n ? WIRE_MOUNT_PAGE_MORE : 0;
        }
    }
    read_end(r, &m);
    free(rec);
}

static void on_usage(void *arg, int result, const fs_usage *usage)
{
    pending_read *r = arg;
    wire_mount_msg m = { .op = WIRE_MOUNT_COUNTS, .rid = r->rid,
                         .result = result };
    if (result == 0 && usage) {
        m.a = usage->keys;
        m.b = usage->bytes;
    }
    read_end(r, &m);
}

static void on_barrier(void *arg, int result)
{
    pending_read *r = arg;
    wire_mount_msg m = { .op = WIRE_MOUNT_DONE, .rid = r->rid,
                         .result = result };
    read_end(r, &m);
}

/* A read of the state: through this node's backend, as its own mount
 * reads.  An FS_READ_APPLIED read from a client that was told of changes
 * this node has not applied yet takes a read point instead (its answer
 * must not be older than what the client was told). */
static void start_read(serve *s, const uint8_t *id, size_t id_len,
                       const wire_mount_req *q)
{
    uint8_t reply_op = q->op == WIRE_MOUNT_READ ? WIRE_MOUNT_ENTRY
                     : q->op == WIRE_MOUNT_LIST ? WIRE_MOUNT_PAGE
                     : q->op == WIRE_MOUNT_USAGE ? WIRE_MOUNT_COUNTS
                     : WIRE_MOUNT_DONE;
    int rc = -EAGAIN;
    pending_read *r = NULL;
    if (s->reads < SERVE_MAX_READS)
        r = read_new(s, id, id_len, reply_op, q->rid);
    if (r) {
        unsigned flags = q->flags;
        if ((flags & FS_READ_APPLIED) &&
            kv_applied_index(s->n->state) < q->arg)
            flags &= ~FS_READ_APPLIED;
        switch (q->op) {
        case WIRE_MOUNT_READ:
            rc = s->be.read_key(s->be.ctx, (const char *)q->bytes, q->len,
                                flags, on_key, r);
            break;
        case WIRE_MOUNT_LIST:
            rc = s->be.list(s->be.ctx, (const char *)q->bytes, q->len,
                            q->max, flags, on_page, r);
            break;
        case WIRE_MOUNT_USAGE:
            rc = s->be.usage(s->be.ctx, on_usage, r);   /* for statfs */
            break;
        default:
            rc = s->be.read_barrier(s->be.ctx, on_barrier, r);
            break;
        }
        if (rc == 0)
            return;
        s->reads--;
        free(r);
    }
    wire_mount_msg m = { .op = reply_op, .rid = q->rid, .result = rc };
    send_msg(s, id, id_len, &m);
}

static void send_text(serve *s, const uint8_t *id, size_t id_len,
                      const wire_mount_req *q)
{
    char *text = NULL;
    size_t len = 0;
    uint32_t len32 = 0;
    int rc;
    if (q->op == WIRE_MOUNT_STATUS) {
        rc = s->be.status_text(s->be.ctx, &text, &len);
    } else if (q->op == WIRE_MOUNT_BLOCK) {
        rc = s->be.block_text(s->be.ctx, q->arg, &text, &len32);
        len = len32;
    } else if (q->op == WIRE_MOUNT_MEMBERS) {
        rc = s->be.members_text ? s->be.members_text(s->be.ctx, &text, &len)
                                : -ENOENT;
    } else {
        rc = s->be.snapshot_text ? s->be.snapshot_text(s->be.ctx, &text, &len)
                                 : -ENOENT;
    }
    wire_mount_msg m = { .op = WIRE_MOUNT_TEXT, .rid = q->rid, .result = rc };
    if (rc == 0 && len > WIRE_MOUNT_MAX_TEXT)
        m.result = -EFBIG;
    else if (rc == 0) {
        m.len = (uint32_t)len;
        m.bytes = (const uint8_t *)text;
    }
    send_msg(s, id, id_len, &m);
    free(text);
}

/* -------------------------------------------------------------- writes */

static void take_write(serve *s, sub *u, const wire_mount_req *q)
{
    node *n = s->n;
    bool answered = q->flags & WIRE_MOUNT_SUBMIT_ANSWERED;
    int rc = 0;
    node_track_leader(n, node_now_ms());
    if (n->fatal)
        rc = health_client_errno(n->fatal);
    else if (n->no_leader && !answered)
        rc = -EHOSTUNREACH;
    else if (s->n_props == SERVE_MAX_PROPOSALS)
        rc = -EAGAIN;
    uint8_t *op = NULL;
    if (rc == 0) {
        op = malloc(q->len);
        if (!op)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        wire_mount_msg m = { .op = WIRE_MOUNT_DONE, .rid = q->rid,
                             .result = rc };
        send_sub(s, u, &m);
        return;
    }
    memcpy(op, q->bytes, q->len);
    s->props[s->n_props++] = (px_request){ .client_id = q->client_id,
                                           .seq = q->rid,
                                           .ack_seq = q->arg,
                                           .len = q->len, .op = op };
    s->writes++;
}

static void propose_all(serve *s)
{
    if (!s->n_props)
        return;
    uint32_t k = s->n_props;
    s->n_props = 0;
    if (!s->n->fatal) {
        px_event ev = { .type = PX_EV_PROPOSE };
        ev.u.propose.requests = s->props;
        ev.u.propose.n_requests = k;
        node_step(s->n, &ev);   /* the replica copies what it takes */
    }
    for (uint32_t i = 0; i < k; i++) {
        if (s->n->fatal)
            serve_result(s, s->props[i].client_id, s->props[i].seq,
                         health_client_errno(s->n->fatal));
        free((void *)s->props[i].op);
    }
}

/* -------------------------------------------------------------- input */

static void note_bad(serve *s, uint64_t now_ms, const char *what, int rc)
{
    if (now_ms - s->last_log_ms < SERVE_LOG_MS && s->last_log_ms)
        return;
    s->last_log_ms = now_ms;
    fprintf(stderr, "paxosfs: node %u: client port: dropped a request (%s%s%s)"
            "; malformed %" PRIu64 ", before HELLO %" PRIu64 ", refused %"
            PRIu64 " so far\n", s->n->cfg.id, what, rc ? ": " : "",
            rc ? wire_strerror(rc) : "", s->malformed, s->unsubscribed,
            s->refused);
}

static sub *subscribe(serve *s, const uint8_t *id, size_t id_len,
                      uint64_t now_ms)
{
    sub *free_slot = NULL;
    for (int i = 0; i < SERVE_MAX_CLIENTS && !free_slot; i++)
        if (!s->subs[i].used)
            free_slot = &s->subs[i];
    if (!free_slot)
        return NULL;
    *free_slot = (sub){ .used = true, .alive = true, .id_len = (uint8_t)id_len,
                        .last_ms = now_ms };
    memcpy(free_slot->id, id, id_len);
    return free_slot;
}

static void handle(serve *s, const uint8_t *id, size_t id_len,
                   const uint8_t *buf, size_t len, uint64_t now_ms)
{
    wire_mount_req q;
    int rc = wire_decode_mount_req(buf, len, &q);
    if (rc < 0) {
        s->malformed++;
        note_bad(s, now_ms, "malformed", rc);
        return;
    }
    sub *u = find_sub(s, id, id_len);
    if (q.op == WIRE_MOUNT_HELLO) {
        if (u && u->alive) {   /* a keepalive */
            u->last_ms = now_ms;
            return;
        }
        if (u)
            u->used = false;   /* its stream broke: start anew */
        u = subscribe(s, id, id_len, now_ms);
        if (!u) {
            s->refused++;
            note_bad(s, now_ms, "too many clients", 0);
            return;
        }
        u->client_id = q.client_id;
        uint32_t flags = 0;
        if (q.arg && !replay(s, u, q.arg)) {
            flags = WIRE_MOUNT_BEAT_GAP;
            s->gaps++;
        } else if (q.arg) {
            s->resumed++;
        }
        send_beat(s, u, flags, now_ms);
        return;
    }
    if (q.op == WIRE_MOUNT_STATUS || q.op == WIRE_MOUNT_BLOCK ||
        q.op == WIRE_MOUNT_SNAPSHOT || q.op == WIRE_MOUNT_MEMBERS) {
        /* no stream: any connection */
        send_text(s, id, id_len, &q);
        return;
    }
    if (!u || !u->alive) {
        /* a node restarted under a connection: the client says HELLO
         * (resuming its stream) and asks again */
        s->unsubscribed++;
        wire_mount_msg m = { .rid = q.rid, .result = -ENOTCONN,
                             .op = q.op == WIRE_MOUNT_READ ? WIRE_MOUNT_ENTRY
                                 : q.op == WIRE_MOUNT_LIST ? WIRE_MOUNT_PAGE
                                 : q.op == WIRE_MOUNT_USAGE ? WIRE_MOUNT_COUNTS
                                 : WIRE_MOUNT_DONE };
        send_msg(s, id, id_len, &m);
        return;
    }
    u->last_ms = now_ms;
    switch (q.op) {
    case WIRE_MOUNT_SUBMIT:
        if (q.client_id != u->client_id) {
            s->malformed++;
            note_bad(s, now_ms, "a write of another session", 0);
            return;
        }
        take_write(s, u, &q);
        break;
    default:
        start_read(s, id, id_len, &q);
        break;
    }
}

bool serve_receive(serve *s, uint64_t now_ms)
{
    for (int i = 0; i < SERVE_RECV_BATCH; i++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, s->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return false;
        }
        bool ok = zmq_msg_more(&id);
        zmq_msg_init(&body);
        if (ok && zmq_msg_recv(&body, s->router, ZMQ_DONTWAIT) < 0)
            ok = false;
        bool extra = false;
        while (ok && zmq_msg_more(&body)) {   /* more parts: not ours */
            zmq_msg_t rest;
            zmq_msg_init(&rest);
            int r = zmq_msg_recv(&rest, s->router, ZMQ_DONTWAIT);
            bool more = r >= 0 && zmq_msg_more(&rest);
            zmq_msg_close(&rest);
            extra = true;
            if (!more)
                break;
        }
        if (!ok || extra || zmq_msg_size(&id) > SERVE_ID_MAX) {
            s->malformed++;
            note_bad(s, now_ms, "not one frame", 0);
        } else {
            handle(s, zmq_msg_data(&id), zmq_msg_size(&id),
                   zmq_msg_data(&body), zmq_msg_size(&body), now_ms);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
    return true;
}

void serve_turn(serve *s, uint64_t now_ms)
{
    propose_all(s);
    for (int i = 0; i < SERVE_MAX_CLIENTS; i++) {
        sub *u = &s->subs[i];
        if (!u->used)
            continue;
        if (now_ms - u->last_ms > SERVE_CLIENT_IDLE_MS) {
            u->used = false;
            continue;
        }
        if (u->alive && now_ms - u->beat_ms >= SERVE_BEAT_MS)
            send_beat(s, u, 0, now_ms);
    }
}

/* ------------------------------------------------------------- set-up */

int serve_fd(const serve *s)
{
    int fd = -1;
    size_t sz = sizeof fd;
    zmq_getsockopt(s->router, ZMQ_FD, &fd, &sz);
    return fd;
}

static void set_int(void *sock, int opt, int v)
{
    zmq_setsockopt(sock, opt, &v, sizeof v);
}

int serve_open(node *n, void *zctx, const char *where, uint16_t port,
               const keys *key, uint32_t ring, serve **out, char *err,
               size_t err_len)
{
    serve *s = calloc(1, sizeof *s);
    if (s)
        s->ring = calloc(ring ? ring : SERVE_RING, sizeof *s->ring);
    if (!s || !s->ring) {
        free(s);
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    s->n = n;
    s->ring_cap = ring ? ring : SERVE_RING;
    int rc = 0;
    if (key && !n->net) {   /* the ZAP handler is the transport's */
        snprintf(err, err_len, "a client port with a key needs --peers");
        rc = -EINVAL;
        goto fail;
    }
    node_backend(n, &s->be);
    s->ring_floor = kv_applied_index(n->state);
    s->router = zmq_socket(zctx, ZMQ_ROUTER);
    if (!s->router) {
        rc = -errno;
        snprintf(err, err_len, "cannot create the client ROUTER socket");
        goto fail;
    }
    set_int(s->router, ZMQ_LINGER, 0);
    set_int(s->router, ZMQ_RCVHWM, 32);   /* x one op: 128 MiB a connection */
    set_int(s->router, ZMQ_SNDHWM, 200000);
    set_int(s->router, ZMQ_ROUTER_MANDATORY, 1);
    set_int(s->router, ZMQ_HANDSHAKE_IVL, 5000);
    int64_t max = WIRE_MOUNT_MAX_REQ + 1024;   /* CURVE overhead */
    zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &max, sizeof max);
    rc = key ? keys_set_server(s->router, key) : 0;
    if (rc == 0) {
        char endpoint[300];
        snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", where, port);
        if (zmq_bind(s->router, endpoint) != 0)
            rc = -errno;
    }
    if (rc < 0) {
        snprintf(err, err_len, "cannot listen for clients on %s:%u: %s", where,
                 port, zmq_strerror(-rc));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    serve_close(s);
    return rc < 0 ? rc : -EIO;
}

void serve_close(serve *s)
{
    if (!s)
        return;
    if (s->router)
        zmq_close(s->router);
    for (uint32_t i = 0; i < s->n_props; i++)
        free((void *)s->props[i].op);
    for (uint32_t i = 0; i < s->ring_n; i++)
        free(s->ring[(s->ring_start + i) % s->ring_cap].key);
    free(s->ring);
    free(s->buf);
    free(s);
}

void serve_status_json(const serve *s, FILE *fp)
{
    uint32_t n = 0;
    for (int i = 0; i < SERVE_MAX_CLIENTS; i++)
        n += s->subs[i].used && s->subs[i].alive;
    fprintf(fp, ",\"clients\":{\"connected\":%" PRIu32 ",\"writes\":%" PRIu64
            ",\"reads\":%" PRIu64 ",\"reads_in_flight\":%" PRIu32
            ",\"resumed\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"malformed\":%"
            PRIu64 ",\"before_hello\":%" PRIu64 ",\"refused\":%" PRIu64
            ",\"dropped\":%" PRIu64 "}", n, s->writes, s->reads_served,
            s->reads, s->resumed, s->gaps, s->malformed, s->unsubscribed,
            s->refused, s->dropped_subs);
}

/*
 * remote.c - owns a client-only mount's protocol (see remote.h): the
 * connection to the node in use, the writes and reads in flight, the
 * stream of changed keys, failover; remote_run.c has the process's loop,
 * start and stop, and the calls answered outside the stream.
 */
#include "remote_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

uint64_t remote_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- sending */

int remote_send_on(remote *r, void *sock, const wire_mount_req *q)
{
    size_t need = wire_mount_req_size(q);
    if (need == 0)
        return -EINVAL;
    if (need > r->buf_cap) {
        uint8_t *b = realloc(r->buf, need);
        if (!b)
            return -ENOMEM;
        r->buf = b;
        r->buf_cap = need;
    }
    size_t len;
    int rc = wire_encode_mount_req_into(q, r->buf, r->buf_cap, &len);
    if (rc < 0)
        return rc;
    /* the DEALER queues while it connects; a full queue is a node that
     * does not read: the silence check switches away from it */
    if (zmq_send(sock, r->buf, len, ZMQ_DONTWAIT) < 0)
        return -errno;
    return 0;
}

static void send_req(remote *r, const wire_mount_req *q)
{
    (void)remote_send_on(r, r->sock, q);
}

static uint64_t ack_seq(const remote *r)
{
    return r->w_head ? r->w_head->seq : r->next_seq;
}

static void send_write(remote *r, wr *w, uint64_t now)
{
    if (w->seq >= ack_seq(r) + REMOTE_WINDOW)
        return;   /* invariant 4: waits for the window */
    wire_mount_req q = { .op = WIRE_MOUNT_SUBMIT, .rid = w->seq,
                         .client_id = r->client_id, .arg = ack_seq(r),
                         .flags = w->answered ? WIRE_MOUNT_SUBMIT_ANSWERED : 0,
                         .len = w->len, .bytes = w->op };
    send_req(r, &q);
    w->sent = true;
    w->sent_ms = now;
    w->retry_ms = 0;
}

/* Invariant 3: a read waits for the answered writes submitted before. */
static bool read_held(const remote *r, const rd *x)
{
    for (const wr *w = r->w_head; w && w->seq <= x->after_seq; w = w->next)
        if (w->answered)
            return true;
    return false;
}

static void send_read(remote *r, rd *x)
{
    if (read_held(r, x))
        return;
    wire_mount_req q = { .rid = x->rid,
                         .arg = r->told > r->seen ? r->told : r->seen };
    switch (x->kind) {
    case RD_KEY:
    case RD_RECHECK:
        q.op = WIRE_MOUNT_READ;
        q.flags = x->flags & WIRE_MOUNT_READ_FLAGS;
        q.len = x->key_len;
        q.bytes = (const uint8_t *)x->key;
        break;
    case RD_LIST:
        q.op = WIRE_MOUNT_LIST;
        q.flags = x->flags & WIRE_MOUNT_READ_FLAGS;
        q.max = x->max;
        q.len = x->key_len;
        q.bytes = (const uint8_t *)x->key;
        break;
    case RD_USAGE:
        q.op = WIRE_MOUNT_USAGE;
        break;
    default:
        q.op = WIRE_MOUNT_BARRIER;
        q.arg = 0;
        break;
    }
    send_req(r, &q);
    x->sent = true;
    x->retry_ms = 0;
}

/* ---------------------------------------------------------- switching */

static void set_int(void *sock, int opt, int v)
{
    zmq_setsockopt(sock, opt, &v, sizeof v);
}

static void *open_dealer(remote *r, uint32_t idx)
{
    void *s = zmq_socket(r->zctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDHWM, 100000);
    set_int(s, ZMQ_RCVHWM, 100000);   /* a full queue stalls the node,
                                         which then ends the stream */
    int64_t max = WIRE_MOUNT_MAX_MSG + 1024;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (r->keyed && keys_set_client(s, &r->key) < 0) {
        zmq_close(s);
        return NULL;
    }
    char endpoint[300];
    snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", r->servers[idx].host,
             r->servers[idx].port);
    if (zmq_connect(s, endpoint) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Where the stream resumes on another node: every change up to the last
 * BEAT's index was received, and every change of an entry before the
 * newest one a CHANGED named (a connection lost mid-entry may have cut
 * that one short). */
static uint64_t resume_index(const remote *r)
{
    if (!r->ever_subscribed)
        return 0;
    uint64_t t = r->told ? r->told - 1 : 0;
    return r->seen > t ? r->seen : t;
}

/* Use servers[idx] from now on: a new connection, HELLO with the index to
 * resume from, and every request not answered yet again (invariant 5). */
int remote_use_server(remote *r, uint32_t idx, uint64_t now)
{
    void *s = open_dealer(r, idx);
    void *sync = s ? open_dealer(r, idx) : NULL;
    if (!sync) {
        if (s)
            zmq_close(s);
        return -ENOMEM;
    }
    if (r->sock)
        zmq_close(r->sock);
    if (r->sync_sock)
        zmq_close(r->sync_sock);
    r->sock = s;
    r->sync_sock = sync;
    r->cur = idx;
    r->subscribed = false;
    r->server_id = 0;
    r->connected_ms = r->last_msg_ms = r->last_hello_ms = now;
    r->last_switch_ms = now;
    r->no_writes_since = 0;
    r->status_rid = 0;
    wire_mount_req hello = { .op = WIRE_MOUNT_HELLO, .client_id = r->client_id,
                             .arg = resume_index(r) };
    send_req(r, &hello);
    for (wr *w = r->w_head; w; w = w->next) {
        if (w->sent)
            r->resent++;
        w->sent = false;
        send_write(r, w, now);
    }
    for (rd *x = r->r_head; x; x = x->next) {
        x->sent = false;
        send_read(r, x);
    }
    return 0;
}

static void fail_over(remote *r, uint64_t now, const char *why)
{
    uint32_t next = (r->cur + 1) % r->cfg.n_servers;
    fprintf(stderr, "paxosfs: client: %s (node %u at %s:%u); using %s:%u\n",
            why, r->server_id, r->servers[r->cur].host, r->servers[r->cur].port,
            r->servers[next].host, r->servers[next].port);
    r->failovers++;
    if (remote_use_server(r, next, now) < 0)
        fprintf(stderr, "paxosfs: client: cannot connect: out of memory\n");
}

/* The node does not know this connection (it restarted under it): say
 * HELLO again, before the requests sent again after it. */
static void hello_again(remote *r, uint64_t now)
{
    if (now - r->last_rehello_ms < 50)
        return;
    r->last_rehello_ms = now;
    r->last_hello_ms = now;
    wire_mount_req hello = { .op = WIRE_MOUNT_HELLO, .client_id = r->client_id,
                             .arg = resume_index(r) };
    send_req(r, &hello);
}

/* ---------------------------------------------------------- completion */

void remote_write_unlink(remote *r, wr *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        r->w_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        r->w_tail = w->prev;
    r->n_writes--;
}

static void read_unlink(remote *r, rd *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        r->r_head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        r->r_tail = x->prev;
    r->n_reads--;
}

/* After writes completed: the window moved, held reads may go. */
static void after_writes(remote *r, uint64_t now)
{
    for (wr *w = r->w_head; w; w = w->next)
        if (!w->sent && !w->retry_ms)
            send_write(r, w, now);
    for (rd *x = r->r_head; x; x = x->next)
        if (!x->sent && !x->retry_ms)
            send_read(r, x);
}

static void write_finish(remote *r, wr *w, int result, uint64_t now)
{
    remote_write_unlink(r, w);
    fs_done_fn done = w->done;
    void *arg = w->arg;
    free(w->op);
    free(w);
    done(arg, result);
    after_writes(r, now);
}

static void read_free(rd *x)
{
    free(x->key);
    free(x);
}

/* What a node answers when it cannot serve now, where another might:
 * no leader reachable, a failed disk, or (EROFS) the node was removed
 * from the configuration and is not a member any more (node/members.c),
 * which a server mount reports as is but a client moves on from. */
static bool node_trouble(int rc)
{
    return rc == -EHOSTUNREACH || rc == -EIO || rc == -ENOSPC ||
           rc == -EROFS;
}

static void on_write_done(remote *r, uint64_t seq, int result, uint64_t now)
{
    wr *w = r->w_head;
    while (w && w->seq != seq)
        w = w->next;
    if (!w || !w->sent)
        return;   /* a duplicate answer, or one for an earlier send */
    if (result == -ENOTCONN) {
        hello_again(r, now);
        send_write(r, w, now);
        return;
    }
    bool in_time = !w->deadline_ms || now < w->deadline_ms;
    if ((result == -EAGAIN || result == -ENOMEM) && in_time) {
        w->sent = false;
        w->retry_ms = now + RETRY_MS;
        return;
    }
    if (node_trouble(result) && in_time && r->cfg.n_servers > 1) {
        w->sent = false;
        if (now - r->last_switch_ms > REMOTE_SILENT_MS / 2)
            fail_over(r, now, "the node cannot take writes");
        else
            w->retry_ms = now + RETRY_MS * 5;
        return;
    }
    write_finish(r, w, result, now);
}

static rd *find_read(remote *r, uint64_t rid)
{
    for (rd *x = r->r_head; x; x = x->next)
        if (x->rid == rid)
            return x;
    return NULL;
}

/* Whether a read's error is one to try again (elsewhere); true: taken
 * care of. */
static bool read_retry(remote *r, rd *x, int result, uint64_t now)
{
    if (now >= x->deadline_ms)
        return false;
    if (result == -EAGAIN || result == -ENOMEM) {
        x->sent = false;
        x->retry_ms = now + RETRY_MS;
        return true;
    }
    if (node_trouble(result) && r->cfg.n_servers > 1) {
        x->sent = false;
        if (now - r->last_switch_ms > REMOTE_SILENT_MS / 2)
            fail_over(r, now, "the node cannot serve reads");
        else
            x->retry_ms = now + RETRY_MS * 5;
        return true;
    }
    return false;
}

static void meta_from(const wire_mount_meta *w, fs_meta *m)
{
    *m = (fs_meta){ .ident = w->ident, .version = w->version,
                    .mtime_ms = w->mtime_ms, .len = w->len, .uid = w->uid,
                    .gid = w->gid, .mode = w->mode };
}

static void start_recheck(remote *r, const char *key, size_t key_len);
static void recheck_one(void *arg, const char *key, size_t key_len);

static void on_read_answer(remote *r, const wire_mount_msg *m, uint64_t now)
{
    rd *x = find_read(r, m->rid);
    if (!x || !x->sent)
        return;
    if (m->result == -ENOTCONN) {
        hello_again(r, now);
        send_read(r, x);
        return;
    }
    if (m->result < 0 && read_retry(r, x, m->result, now))
        return;
    read_unlink(r, x);
    int result = m->result;
    switch (x->kind) {
    case RD_RECHECK:   /* invariant 2: after a gap */
        if (m->op == WIRE_MOUNT_ENTRY && result == 0) {
            fs_meta meta;
            meta_from(&m->meta, &meta);
            if (r->mount)
                fs_key_changed(r->mount, x->key, x->key_len, &meta);
        } else {
            start_recheck(r, x->key, x->key_len);   /* again */
        }
        break;
    case RD_KEY: {
        /* what the mount relies on: one length, the value's */
        if (m->op != WIRE_MOUNT_ENTRY ||
            (result == 0 && (x->flags & FS_READ_VALUE) && m->meta.ident &&
             m->meta.len != m->len)) {
            result = -EIO;
            r->malformed++;
        }
        if (result < 0) {
            x->done.key(x->arg, result, NULL);
            break;
        }
        fs_entry_view view = { 0 };
        meta_from(&m->meta, &view.meta);
        kv_value *v = NULL;
        if ((x->flags & FS_READ_VALUE) && view.meta.ident) {
            v = malloc(sizeof *v + m->len);
            if (!v) {
                x->done.key(x->arg, -ENOMEM, NULL);
                break;
            }
            *v = (kv_value){ .refs = 1, .len = m->len,
                             .mtime_ms = m->meta.mtime_ms,
                             .version = m->meta.version,
                             .ident = m->meta.ident, .uid = m->meta.uid,
                             .gid = m->meta.gid, .mode = m->meta.mode };
            if (m->len)
                memcpy(v->data, m->bytes, m->len);
            view.value = v;
        }
        x->done.key(x->arg, 0, &view);
        kv_value_unref(v);
        break;
    }
    case RD_LIST: {
        if (m->op != WIRE_MOUNT_PAGE) {
            result = -EIO;
            r->malformed++;
        }
        fs_entry_view *ents = NULL;
        if (result == 0 && m->n) {
            ents = calloc(m->n, sizeof *ents);
            if (!ents)
                result = -ENOMEM;
        }
        fs_dir_page page = { .entries = ents, .n = 0,
                             .more = m->flags & WIRE_MOUNT_PAGE_MORE };
        if (result == 0) {
            const uint8_t *p = m->bytes;
            size_t left = m->len;
            for (uint32_t i = 0; i < m->n; i++) {
                const char *k;
                uint16_t kl;
                wire_mount_meta wm;
                wire_mount_get_record(&p, &left, &k, &kl, &wm);
                ents[i].key = k;
                ents[i].key_len = kl;
                meta_from(&wm, &ents[i].meta);
                /* in byte order, after the key asked from: a listing
                 * must make progress */
                const char *prev = i ? ents[i - 1].key : x->key;
                size_t plen = i ? ents[i - 1].key_len : x->key_len;
                size_t c = plen < kl ? plen : kl;
                int cmp = c ? memcmp(prev, k, c) : 0;
                if ((i || plen) && (cmp > 0 || (cmp == 0 && plen >= kl)))
                    result = -EIO;
            }
            if (result == 0)
                page.n = m->n;
            else
                r->malformed++;
        }
        x->done.list(x->arg, result, result < 0 ? NULL : &page);
        free(ents);
        break;
    }
    case RD_USAGE: {
        if (m->op != WIRE_MOUNT_COUNTS) {
            result = -EIO;
            r->malformed++;
        }
        fs_usage u = { .keys = m->a, .bytes = m->b };
        x->done.usage(x->arg, result, result < 0 ? NULL : &u);
        break;
    }
    default:
        if (m->op != WIRE_MOUNT_DONE) {
            result = -EIO;
            r->malformed++;
        }
        x->done.barrier(x->arg, result);
        break;
    }
    read_free(x);
}

/* ------------------------------------------------------------- the stream */

static void on_beat(remote *r, const wire_mount_msg *m, uint64_t now)
{
    bool first = !r->subscribed;
    r->subscribed = true;
    r->ever_subscribed = true;
    if (m->a > r->seen)
        r->seen = m->a;
    r->server_id = m->server;
    r->leader_id = m->leader;
    bool grew = m->b > r->chain_head;
    r->chain_head = m->b;
    r->chain_base = m->c;
    if (grew && r->mount)   /* readers of .chain/stream (every beat) */
        fs_chain_grew(r->mount);
    r->can_write = m->result;
    if (first)
        fprintf(stderr, "paxosfs: client: using node %u at %s:%u (leader %u)"
                "\n", m->server, r->servers[r->cur].host,
                r->servers[r->cur].port, m->leader);
    if (m->flags & WIRE_MOUNT_BEAT_GAP) {
        r->gaps++;
        fprintf(stderr, "paxosfs: client: node %u no longer holds the changes "
                "since index %" PRIu64 "; reading every key the mount holds "
                "again\n", m->server, r->seen);
        fs_each_key(r->mount, recheck_one, r);
    }
    if (m->result < 0) {
        if (!r->no_writes_since)
            r->no_writes_since = now;
    } else {
        r->no_writes_since = 0;
    }
    if (r->cfg.n_servers < 2 || now - r->last_switch_ms < 2 * REMOTE_SILENT_MS)
        return;
    if (r->no_writes_since && now - r->no_writes_since > REMOTE_SILENT_MS) {
        fail_over(r, now, "the node refuses writes");
        return;
    }
    /* writes go to the leader: move to it once it is known and steady */
    if (m->leader && m->leader != m->server) {
        for (uint32_t i = 0; i < r->cfg.n_servers; i++)
            if (r->servers[i].id == m->leader && i != r->cur) {
                r->moves++;
                fprintf(stderr, "paxosfs: client: moving to the leader, node "
                        "%u\n", m->leader);
                remote_use_server(r, i, now);
                return;
            }
    }
}

static void on_message(remote *r, const uint8_t *buf, size_t len, uint64_t now)
{
    wire_mount_msg m;
    int rc = wire_decode_mount_msg(buf, len, &m);
    if (rc < 0) {
        r->malformed++;
        if ((r->malformed & (r->malformed - 1)) == 0)
            fprintf(stderr, "paxosfs: client: dropped a message from node %u "
                    "(%s), %" PRIu64 " so far\n", r->server_id,
                    wire_strerror(rc), r->malformed);
        return;
    }
    r->last_msg_ms = now;
    switch (m.op) {
    case WIRE_MOUNT_BEAT:
        on_beat(r, &m, now);
        break;
    case WIRE_MOUNT_CHANGED:
        if (m.rid > r->told)
            r->told = m.rid;
        if (r->mount) {
            fs_meta meta;
            meta_from(&m.meta, &meta);
            fs_key_changed(r->mount, (const char *)m.bytes, m.len, &meta);
        }
        break;
    case WIRE_MOUNT_DONE:
        if (m.rid & READ_RID_BIT)
            on_read_answer(r, &m, now);
        else
            on_write_done(r, m.rid, m.result, now);
        break;
    case WIRE_MOUNT_TEXT:
        if (m.rid == r->status_rid) {
            r->status_rid = 0;
            char *t = malloc((size_t)m.len + 1);
            if (t && m.result == 0) {
                memcpy(t, m.bytes, m.len);
                while (m.len && (t[m.len - 1] == '\n'))
                    m.len--;
                t[m.len] = '\0';
                free(r->server_status);
                r->server_status = t;
            } else {
                free(t);
            }
        }
        break;
    default:
        on_read_answer(r, &m, now);
        break;
    }
}

/* Drain the connection (bounded); true if it stopped at the bound. */
bool remote_receive(remote *r, uint64_t now)
{
    for (int i = 0; i < RECV_BATCH; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, r->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return false;
        }
        void *sock = r->sock;
        on_message(r, zmq_msg_data(&msg), zmq_msg_size(&msg), now);
        zmq_msg_close(&msg);
        if (sock != r->sock)   /* switched: the rest was the old node's */
            return true;
    }
    return true;
}

/* ------------------------------------------------------------- backend */

static uint64_t last_answered_seq(const remote *r)
{
    for (const wr *w = r->w_tail; w; w = w->prev)
        if (w->answered)
            return w->seq;
    return 0;
}

static int be_submit(void *ctx, const uint8_t *op, uint32_t len,
                     bool answered, fs_done_fn done, void *arg)
{
    remote *r = ctx;
    if (!len || len > LIMIT_OP)
        return -EINVAL;
    wr *w = calloc(1, sizeof *w);
    uint8_t *copy = malloc(len);
    if (!w || !copy) {
        free(w);
        free(copy);
        return -ENOMEM;
    }
    memcpy(copy, op, len);
    uint64_t now = remote_now_ms();
    *w = (wr){ .seq = r->next_seq++, .op = copy, .len = len,
               .answered = answered, .done = done, .arg = arg,
               .deadline_ms = answered ? 0 : now + r->cfg.commit_timeout_ms };
    w->prev = r->w_tail;
    if (r->w_tail)
        r->w_tail->next = w;
    else
        r->w_head = w;
    r->w_tail = w;
    r->n_writes++;
    send_write(r, w, now);
    return 0;
}

static rd *read_new(remote *r, uint8_t kind, unsigned flags, const char *key,
                    size_t key_len, void *arg)
{
    rd *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    if (key_len) {
        x->key = malloc(key_len);
        if (!x->key) {
            free(x);
            return NULL;
        }
        memcpy(x->key, key, key_len);
    }
    x->key_len = (uint32_t)key_len;
    x->rid = READ_RID_BIT | r->next_rid++;
    x->kind = kind;
    x->flags = flags;
    x->arg = arg;
    x->after_seq = last_answered_seq(r);
    x->deadline_ms = remote_now_ms() + r->cfg.commit_timeout_ms;
    return x;
}

static void read_go(remote *r, rd *x)
{
    x->prev = r->r_tail;
    if (r->r_tail)
        r->r_tail->next = x;
    else
        r->r_head = x;
    r->r_tail = x;
    r->n_reads++;
    send_read(r, x);
}

/* Invariant 2 after a gap: what `key` holds now, told to the mount when
 * the answer comes (in the stream's order, as every answer). */
static void start_recheck(remote *r, const char *key, size_t key_len)
{
    rd *x = read_new(r, RD_RECHECK, FS_READ_APPLIED, key, key_len, NULL);
    if (!x) {
        fprintf(stderr, "paxosfs: client: out of memory rechecking a key "
                "after a gap; its kernel caches may be stale\n");
        return;
    }
    r->rechecks++;
    x->deadline_ms = UINT64_MAX;
    read_go(r, x);
}

static void recheck_one(void *arg, const char *key, size_t key_len)
{
    start_recheck(arg, key, key_len);
}

static int be_read_key(void *ctx, const char *key, size_t key_len,
                       unsigned flags, fs_read_fn done, void *arg)
{
    remote *r = ctx;
    if (!key_len || key_len > LIMIT_KEY)
        return -EINVAL;
    rd *x = read_new(r, RD_KEY, flags, key, key_len, arg);
    if (!x)
        return -ENOMEM;
    x->done.key = done;
    read_go(r, x);
    return 0;
}

static int be_list(void *ctx, const char *after, size_t after_len,
                   uint32_t max, unsigned flags, fs_list_fn done, void *arg)
{
    remote *r = ctx;
    if (after_len > LIMIT_KEY || max == 0)
        return -EINVAL;
    rd *x = read_new(r, RD_LIST, flags, after, after_len, arg);
    if (!x)
        return -ENOMEM;
    x->max = max < WIRE_MOUNT_PAGE_MAX ? max : WIRE_MOUNT_PAGE_MAX;
    x->done.list = done;
    read_go(r, x);
    return 0;
}

static int be_usage(void *ctx, fs_usage_fn done, void *arg)
{
    remote *r = ctx;
    rd *x = read_new(r, RD_USAGE, 0, NULL, 0, arg);
    if (!x)
        return -ENOMEM;
    x->done.usage = done;
    read_go(r, x);
    return 0;
}

static int be_read_barrier(void *ctx, fs_done_fn done, void *arg)
{
    remote *r = ctx;
    rd *x = read_new(r, RD_BARRIER, 0, NULL, 0, arg);
    if (!x)
        return -ENOMEM;
    x->done.barrier = done;
    read_go(r, x);
    return 0;
}

static int be_can_write(void *ctx)
{
    remote *r = ctx;
    uint64_t now = remote_now_ms();
    if (!r->subscribed && now - r->last_msg_ms > 2 * REMOTE_SILENT_MS)
        return -EHOSTUNREACH;
    return r->can_write < 0 && r->cfg.n_servers < 2 ? r->can_write : 0;
}

static uint64_t be_chain_head(void *ctx)
{
    return ((remote *)ctx)->chain_head;
}

static uint64_t be_chain_base(void *ctx)
{
    return ((remote *)ctx)->chain_base;
}

/* -------------------------------------------------------------- timers */

void remote_fail_read(remote *r, rd *x, int result)
{
    read_unlink(r, x);
    switch (x->kind) {
    case RD_KEY: x->done.key(x->arg, result, NULL); break;
    case RD_LIST: x->done.list(x->arg, result, NULL); break;
    case RD_USAGE: x->done.usage(x->arg, result, NULL); break;
    case RD_BARRIER: x->done.barrier(x->arg, result); break;
    default: break;
    }
    read_free(x);
}

void remote_timers(remote *r, uint64_t now)
{
    if (now - r->last_msg_ms > REMOTE_SILENT_MS) {
        fail_over(r, now, r->subscribed ? "the node fell silent"
                                        : "the node does not answer");
        return;
    }
    if (now - r->last_hello_ms >= REMOTE_HELLO_MS) {
        wire_mount_req hello = { .op = WIRE_MOUNT_HELLO,
                                 .client_id = r->client_id,
                                 .arg = resume_index(r) };
        send_req(r, &hello);
        r->last_hello_ms = now;
    }
    if (r->subscribed && !r->status_rid &&
        now - r->status_ms >= REMOTE_STATUS_MS) {
        wire_mount_req q = { .op = WIRE_MOUNT_STATUS,
                             .rid = READ_RID_BIT | r->next_rid++ };
        r->status_rid = q.rid;
        r->status_ms = now;
        send_req(r, &q);
    } else if (r->status_rid && now - r->status_ms > 5 * REMOTE_STATUS_MS) {
        r->status_rid = 0;
    }
    for (wr *w = r->w_head, *next; w; w = next) {
        next = w->next;
        if (w->deadline_ms && now >= w->deadline_ms) {
            write_finish(r, w, -ETIMEDOUT, now);
            continue;
        }
        if (w->retry_ms && now >= w->retry_ms) {
            send_write(r, w, now);
        } else if (w->sent && now - w->sent_ms >= REMOTE_RESEND_MS) {
            /* a request lost on the way to the leader (it changed) */
            r->resent++;
            send_write(r, w, now);
        }
    }
    for (rd *x = r->r_head, *next; x; x = next) {
        next = x->next;
        if (now >= x->deadline_ms) {
            remote_fail_read(r, x, -ETIMEDOUT);
            continue;
        }
        if (x->retry_ms && now >= x->retry_ms)
            send_read(r, x);
    }
}

/* The fs_backend calls answered through the stream (remote_run.c adds
 * status_text, block_text and snapshot_text). */
void remote_backend(remote *r, fs_backend *be)
{
    *be = (fs_backend){
        .ctx = r,
        .submit = be_submit,
        .read_barrier = be_read_barrier,
        .read_key = be_read_key,
        .list = be_list,
        .usage = be_usage,
        .can_write = be_can_write,
        .chain_head = be_chain_head,
        .chain_base = be_chain_base,
    };
}

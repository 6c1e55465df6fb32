/*
 * remote.c - owns a client-only mount (see remote.h): the connection to
 * the node in use, the writes and reads in flight, the stream of changed
 * keys, and the process's loop.
 */
#include "remote.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../fs/fs.h"
#include "../net/wire_mount.h"

#define READ_RID_BIT (UINT64_C(1) << 63)   /* read rids; writes use seqs */
#define RETRY_MS 20
#define RECV_BATCH 512

enum { RD_KEY = 1, RD_LIST, RD_USAGE, RD_BARRIER, RD_RECHECK };

typedef struct wr {
    struct wr *prev, *next;
    uint64_t seq;
    uint8_t *op;
    uint32_t len;
    bool answered;
    bool sent;
    uint64_t deadline_ms;      /* 0: none (answered) */
    uint64_t sent_ms;
    uint64_t retry_ms;         /* 0, or resend then */
    fs_done_fn done;
    void *arg;
} wr;

typedef struct rd {
    struct rd *prev, *next;
    uint64_t rid;
    uint8_t kind;
    unsigned flags;
    uint32_t max;
    bool sent;
    uint64_t after_seq;        /* answered writes up to here first */
    uint64_t deadline_ms;
    uint64_t retry_ms;
    union {
        fs_read_fn key;
        fs_list_fn list;
        fs_usage_fn usage;
        fs_done_fn barrier;
    } done;
    void *arg;
    uint32_t key_len;
    char *key;
} rd;

struct remote {
    remote_config cfg;
    net_peer_addr servers[TRANSPORT_MAX_PEERS];
    keys key;
    bool keyed;
    char *mountpoint;
    void *zctx;
    void *sock;                /* DEALER to servers[cur] */
    void *sync_sock;           /* DEALER for synchronous text calls */
    uint32_t cur;
    uint64_t client_id;
    uint64_t next_seq, next_rid;
    uint8_t *buf;
    size_t buf_cap;

    /* the stream */
    bool subscribed;           /* a BEAT came on this connection */
    bool ever_subscribed;
    uint64_t seen;             /* applied index of the last BEAT */
    uint64_t told;             /* highest CHANGED index */
    uint64_t connected_ms, last_msg_ms, last_hello_ms, last_switch_ms;
    uint64_t last_rehello_ms;
    uint64_t no_writes_since;  /* the node refuses writes since (0: no) */
    uint32_t server_id, leader_id;
    uint64_t chain_head, chain_base;
    int can_write;

    /* .status: the node's, kept fresh */
    char *server_status;
    uint64_t status_rid, status_ms;

    wr *w_head, *w_tail;       /* by seq */
    uint64_t n_writes;
    rd *r_head, *r_tail;
    uint64_t n_reads;

    uint64_t failovers, moves, gaps, resent, malformed, rechecks;
    fs *mount;
    int signal_fd;
    bool stop;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- sending */

static int send_on(remote *r, void *sock, const wire_mount_req *q)
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
    (void)send_on(r, r->sock, q);
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
static int use_server(remote *r, uint32_t idx, uint64_t now)
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
    if (use_server(r, next, now) < 0)
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

static void write_unlink(remote *r, wr *w)
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
    write_unlink(r, w);
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

/* What a node answers when it cannot serve now, where another might. */
static bool node_trouble(int rc)
{
    return rc == -EHOSTUNREACH || rc == -EIO || rc == -ENOSPC;
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
    r->chain_head = m->b;
    r->chain_base = m->c;
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
                use_server(r, i, now);
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
static bool receive(remote *r, uint64_t now)
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
    uint64_t now = now_ms();
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
    x->deadline_ms = now_ms() + r->cfg.commit_timeout_ms;
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
    uint64_t now = now_ms();
    if (!r->subscribed && now - r->last_msg_ms > 2 * REMOTE_SILENT_MS)
        return -EHOSTUNREACH;
    return r->can_write < 0 && r->cfg.n_servers < 2 ? r->can_write : 0;
}

static int be_status_text(void *ctx, char **text, size_t *len)
{
    remote *r = ctx;
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    if (!fp)
        return -ENOMEM;
    uint64_t now = now_ms();
    fprintf(fp, "{\"client\":true,\"client_id\":\"%016" PRIx64 "\","
            "\"server\":%u,\"server_endpoint\":\"%s:%u\",\"connected\":%s,"
            "\"leader\":%u,\"applied_index\":%" PRIu64 ",\"told_index\":%"
            PRIu64 ",\"failovers\":%" PRIu64 ",\"moves_to_leader\":%" PRIu64
            ",\"stream_gaps\":%" PRIu64 ",\"rechecked_keys\":%" PRIu64
            ",\"resent_writes\":%" PRIu64
            ",\"malformed\":%" PRIu64 ",\"pending_writes\":%" PRIu64
            ",\"reads_in_flight\":%" PRIu64 ",\"last_heard_ms\":%" PRIu64
            ",\"server_status\":%s}\n",
            r->client_id, r->server_id, r->servers[r->cur].host,
            r->servers[r->cur].port, r->subscribed ? "true" : "false",
            r->leader_id, r->seen, r->told, r->failovers, r->moves, r->gaps,
            r->rechecks, r->resent, r->malformed, r->n_writes, r->n_reads,
            now - r->last_msg_ms,
            r->server_status && r->server_status[0] == '{' ? r->server_status
                                                           : "null");
    if (fclose(fp) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *text = buf;
    *len = size;
    return 0;
}

/* A text the node renders, asked on the second connection and waited for
 * (at most REMOTE_SYNC_MS; the mount's other requests wait meanwhile:
 * docs/design.md "Client-only mounts"). */
static int sync_text(remote *r, uint8_t op, uint64_t arg, char **text,
                     size_t *len)
{
    wire_mount_req q = { .op = op, .rid = READ_RID_BIT | r->next_rid++,
                         .arg = arg };
    int rc = send_on(r, r->sync_sock, &q);
    if (rc < 0)
        return rc;
    uint64_t deadline = now_ms() + REMOTE_SYNC_MS;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        zmq_pollitem_t it = { .socket = r->sync_sock, .events = ZMQ_POLLIN };
        if (zmq_poll(&it, 1, (long)(deadline - now)) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, r->sync_sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        wire_mount_msg m;
        rc = wire_decode_mount_msg(zmq_msg_data(&msg), zmq_msg_size(&msg), &m);
        if (rc < 0 || m.op != WIRE_MOUNT_TEXT || m.rid != q.rid) {
            zmq_msg_close(&msg);
            continue;   /* an answer to an earlier call that timed out */
        }
        rc = m.result;
        if (rc == 0) {
            *text = malloc((size_t)m.len + 1);
            if (!*text) {
                rc = -ENOMEM;
            } else {
                memcpy(*text, m.bytes, m.len);
                (*text)[m.len] = '\0';
                *len = m.len;
            }
        }
        zmq_msg_close(&msg);
        return rc;
    }
}

static int be_block_text(void *ctx, uint64_t index, char **text, uint32_t *len)
{
    size_t l = 0;
    int rc = sync_text(ctx, WIRE_MOUNT_BLOCK, index, text, &l);
    if (rc == 0)
        *len = (uint32_t)l;
    return rc;
}

static int be_snapshot_text(void *ctx, char **text, size_t *len)
{
    return sync_text(ctx, WIRE_MOUNT_SNAPSHOT, 0, text, len);
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

static void fail_read(remote *r, rd *x, int result)
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

static void timers(remote *r, uint64_t now)
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
            fail_read(r, x, -ETIMEDOUT);
            continue;
        }
        if (x->retry_ms && now >= x->retry_ms)
            send_read(r, x);
    }
}

/* ---------------------------------------------------------------- run */

static int wait_beat(remote *r, uint64_t until)
{
    while (!r->subscribed) {
        uint64_t now = now_ms();
        if (now >= until)
            return -ETIMEDOUT;
        zmq_pollitem_t it = { .socket = r->sock, .events = ZMQ_POLLIN };
        long t = (long)(until - now);
        zmq_poll(&it, 1, t < 50 ? t : 50);
        receive(r, now_ms());
    }
    return 0;
}

int remote_open(const remote_config *cfg, uint64_t wait_ms, remote **out,
                char *err, size_t err_len)
{
    if (!cfg->n_servers || cfg->n_servers > TRANSPORT_MAX_PEERS) {
        snprintf(err, err_len, "a client needs 1 to %d nodes in --peers",
                 TRANSPORT_MAX_PEERS);
        return -EINVAL;
    }
    remote *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    r->cfg = *cfg;
    r->signal_fd = -1;
    memcpy(r->servers, cfg->servers, cfg->n_servers * sizeof *cfg->servers);
    r->cfg.servers = r->servers;
    if (cfg->key) {
        r->key = *cfg->key;
        r->keyed = true;
        r->cfg.key = &r->key;
    }
    r->mountpoint = strdup(cfg->mountpoint);
    r->cfg.mountpoint = r->mountpoint;
    while (r->client_id == 0)
        if (getrandom(&r->client_id, sizeof r->client_id, 0) !=
            sizeof r->client_id)
            r->client_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    r->next_seq = 1;
    r->next_rid = 1;
    r->zctx = zmq_ctx_new();
    if (!r->mountpoint || !r->zctx) {
        snprintf(err, err_len, "out of memory");
        remote_close(r);
        return -ENOMEM;
    }
    uint64_t until = now_ms() + wait_ms;
    for (uint32_t i = 0;; i = (i + 1) % cfg->n_servers) {
        uint64_t now = now_ms();
        if (use_server(r, i, now) < 0) {
            snprintf(err, err_len, "cannot create a socket");
            remote_close(r);
            return -ENOMEM;
        }
        uint64_t try_until = now + REMOTE_SILENT_MS;
        if (wait_beat(r, try_until < until ? try_until : until) == 0)
            break;
        if (now_ms() >= until) {
            snprintf(err, err_len, "no node answered on its client port "
                     "within %" PRIu64 " ms", wait_ms);
            remote_close(r);
            return -EHOSTUNREACH;
        }
    }
    *out = r;
    return 0;
}

static int open_signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int remote_mount(remote *r, char *err, size_t err_len)
{
    r->signal_fd = open_signal_fd();
    if (r->signal_fd < 0) {
        snprintf(err, err_len, "signalfd: %s", strerror(-r->signal_fd));
        return r->signal_fd;
    }
    fs_backend be = {
        .ctx = r,
        .submit = be_submit,
        .read_barrier = be_read_barrier,
        .read_key = be_read_key,
        .list = be_list,
        .usage = be_usage,
        .can_write = be_can_write,
        .status_text = be_status_text,
        .block_text = be_block_text,
        .chain_head = be_chain_head,
        .chain_base = be_chain_base,
        .snapshot_text = be_snapshot_text,
    };
    fs_options opt = {
        .attr_timeout_s = r->cfg.attr_timeout_s,
        .entry_timeout_s = r->cfg.entry_timeout_s,
        .debug = r->cfg.fuse_debug,
        .allow_other = r->cfg.allow_other,
    };
    return fs_mount(&opt, &be, r->mountpoint, &r->mount, err, err_len);
}

static bool zmq_readable(void *sock)
{
    int ev = 0;
    size_t sz = sizeof ev;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) == 0 &&
           (ev & ZMQ_POLLIN);
}

int remote_run(remote *r)
{
    uint64_t drain_until = 0;
    for (;;) {
        uint64_t now = now_ms();
        if (r->stop) {
            /* writes made at close: give them the commit timeout */
            bool answered = false;
            for (wr *w = r->w_head; w; w = w->next)
                answered |= w->answered;
            if (!answered)
                break;
            if (!drain_until) {
                drain_until = now + r->cfg.commit_timeout_ms;
                fprintf(stderr, "paxosfs: client: waiting for writes made at "
                        "close to commit\n");
            }
            if (now >= drain_until) {
                fprintf(stderr, "paxosfs: client: stopping with writes made "
                        "at close not known to be committed\n");
                break;
            }
        }
        int zfd = -1;
        size_t sz = sizeof zfd;
        zmq_getsockopt(r->sock, ZMQ_FD, &zfd, &sz);
        struct pollfd fds[3] = {
            { .fd = r->signal_fd, .events = POLLIN },
            { .fd = zfd, .events = POLLIN },
            { .fd = r->mount && !r->stop ? fs_fd(r->mount) : -1,
              .events = POLLIN },
        };
        int timeout = zmq_readable(r->sock) ? 0 : 20;
        int pr = poll(fds, 3, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(r->signal_fd, &si, sizeof si) > 0) {
                fprintf(stderr, "paxosfs: client: signal %u, stopping\n",
                        si.ssi_signo);
                if (r->stop)
                    drain_until = 1;
                r->stop = true;
            }
        }
        receive(r, now_ms());
        if (pr > 0 && fds[2].fd >= 0 &&
            (fds[2].revents & (POLLIN | POLLERR | POLLHUP))) {
            int rc = fs_process(r->mount);
            if (rc != 0) {
                if (rc < 0)
                    fprintf(stderr, "paxosfs: FUSE: %s\n", strerror(-rc));
                else
                    fprintf(stderr, "paxosfs: client: unmounted, stopping\n");
                r->stop = true;
            }
        }
        timers(r, now_ms());
    }
    return 0;
}

void remote_close(remote *r)
{
    if (!r)
        return;
    /* what still waits: answered into the void, nothing leaks */
    while (r->r_head)
        fail_read(r, r->r_head, -EIO);
    while (r->w_head) {
        wr *w = r->w_head;
        write_unlink(r, w);
        w->done(w->arg, -EIO);
        free(w->op);
        free(w);
    }
    if (r->mount)
        fs_unmount(r->mount);
    if (r->sock)
        zmq_close(r->sock);
    if (r->sync_sock)
        zmq_close(r->sync_sock);
    if (r->zctx)
        zmq_ctx_term(r->zctx);
    if (r->signal_fd >= 0)
        close(r->signal_fd);
    free(r->server_status);
    free(r->buf);
    free(r->mountpoint);
    free(r);
}

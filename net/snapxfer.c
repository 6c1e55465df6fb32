/*
 * snapxfer.c - owns snapshot transfers between nodes (snapxfer.h): the
 * receiver's transfer (asks, checks, the store's checked receiver) and
 * the sender's sessions (one open snapshot file per asking peer).
 */
#include "snapxfer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct session {
    uint32_t peer;            /* 0: free */
    uint64_t index;
    uint64_t size;
    snap_reader *reader;
    uint64_t last_ms;
} session;

struct snapxfer {
    snapxfer_config cfg;
    snapxfer_edges edges;
    snapstore *st;
    /* receiving */
    bool active;
    uint32_t source;
    uint64_t min_index;
    uint64_t index, total, received, asked_to;
    snapstore_recv *rx;
    uint64_t progress_ms, ask_ms, started_ms;
    bool done;                /* a completed snapshot waits for take */
    kv *state;
    snap_info info;
    uint64_t last_log_ms;
    /* sending */
    session sessions[SNAPXFER_MAX_SESSIONS];
    uint8_t *buf;             /* one chunk's bytes */
    size_t buf_cap;
    snapxfer_stats stats;
};

static void xlog(snapxfer *x, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (x->edges.log)
        x->edges.log(x->edges.arg, line);
    else
        fprintf(stderr, "paxosfs: node %u: %s\n", x->cfg.self_id, line);
}

int snapxfer_new(const snapxfer_config *cfg, const snapxfer_edges *edges,
                 snapstore *st, snapxfer **out)
{
    if (!cfg || !edges || !edges->send || !st || !out)
        return -EINVAL;
    snapxfer *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->cfg = *cfg;
    if (!x->cfg.max_total)
        x->cfg.max_total = SNAPXFER_MAX_TOTAL;
    if (!x->cfg.chunk_bytes || x->cfg.chunk_bytes > WIRE_MAX_CHUNK_BYTES)
        x->cfg.chunk_bytes = SNAPXFER_CHUNK_BYTES;
    if (!x->cfg.window_chunks || x->cfg.window_chunks > WIRE_MAX_ASK_CHUNKS)
        x->cfg.window_chunks = SNAPXFER_WINDOW_CHUNKS;
    if (!x->cfg.stall_ms)
        x->cfg.stall_ms = SNAPXFER_STALL_MS;
    if (!x->cfg.abandon_ms)
        x->cfg.abandon_ms = SNAPXFER_ABANDON_MS;
    if (!x->cfg.idle_ms)
        x->cfg.idle_ms = SNAPXFER_IDLE_MS;
    x->edges = *edges;
    x->st = st;
    *out = x;
    return 0;
}

static void session_close(snapxfer *x, session *s)
{
    if (s->reader)
        snap_reader_close(s->reader);
    memset(s, 0, sizeof(*s));
    if (x->stats.sessions)
        x->stats.sessions--;
}

static void rx_reset(snapxfer *x)
{
    snapstore_recv_free(x->rx);   /* removes its temporary file */
    x->rx = NULL;
    x->active = false;
    x->source = 0;
    x->index = x->total = x->received = x->asked_to = 0;
}

void snapxfer_free(snapxfer *x)
{
    if (!x)
        return;
    rx_reset(x);
    kv_destroy(x->state);
    for (uint32_t i = 0; i < SNAPXFER_MAX_SESSIONS; i++)
        if (x->sessions[i].peer)
            session_close(x, &x->sessions[i]);
    free(x->buf);
    free(x);
}

/* ---------------------------------------------------------- receiving */

static uint64_t window_bytes(const snapxfer *x)
{
    return (uint64_t)x->cfg.chunk_bytes * x->cfg.window_chunks;
}

static void ask(snapxfer *x, uint64_t now_ms)
{
    wire_snapshot_ask a = { .from = x->cfg.self_id, .to = x->source,
                            .index = x->index, .offset = x->received,
                            .len = (uint32_t)window_bytes(x) };
    uint8_t frame[WIRE_HEADER_BYTES + 64];
    size_t len;
    x->ask_ms = now_ms;
    x->asked_to = x->received + a.len;
    if (wire_encode_snapshot_ask_into(&a, frame, sizeof frame, &len) == 0 &&
        x->edges.send(x->edges.arg, x->source, frame, len) == 0)
        x->stats.asks_sent++;
}

static void drop(snapxfer *x, uint32_t from, uint64_t now_ms, const char *why)
{
    x->stats.dropped++;
    if (!x->last_log_ms || now_ms - x->last_log_ms >= SNAPXFER_LOG_MS) {
        x->last_log_ms = now_ms;
        xlog(x, "dropped a snapshot chunk from node %u: %s (%" PRIu64
             " dropped so far)", from, why, x->stats.dropped);
    }
}

static void fail(snapxfer *x, const char *why)
{
    xlog(x, "snapshot transfer from node %u at index %" PRIu64 " given up "
         "after %" PRIu64 " of %" PRIu64 " bytes: %s", x->source, x->index,
         x->received, x->total, why);
    x->stats.failed++;
    rx_reset(x);
}

int snapxfer_fetch(snapxfer *x, uint32_t from, uint64_t min_index,
                   uint64_t now_ms)
{
    if (!x || from == 0 || from == x->cfg.self_id)
        return -EINVAL;
    if (x->done)
        return 0;    /* one waits to be installed */
    if (x->active && (x->source == from ||
                      now_ms - x->progress_ms < x->cfg.stall_ms)) {
        if (min_index > x->min_index)
            x->min_index = min_index;
        return 0;
    }
    if (x->active)
        fail(x, "another source asked for");
    x->active = true;
    x->source = from;
    x->min_index = min_index;
    x->started_ms = x->progress_ms = now_ms;
    ask(x, now_ms);
    return 0;
}

int snapxfer_on_chunk(snapxfer *x, uint32_t from, const wire_snapshot *c,
                      uint64_t now_ms)
{
    if (!x->active) {
        drop(x, from, now_ms, "no transfer asked for");
        return 0;
    }
    if (from != x->source) {
        drop(x, from, now_ms, "not from the node asked");
        return 0;
    }
    if (!x->rx) {
        if (c->offset != 0) {
            drop(x, from, now_ms, "does not start the snapshot");
            return 0;
        }
        if (c->index <= x->min_index) {
            drop(x, from, now_ms, "snapshot not newer than needed");
            fail(x, "the source's snapshot is not newer than needed");
            return 0;
        }
        if (c->total > x->cfg.max_total || c->total == 0) {
            drop(x, from, now_ms, "snapshot size over the limit");
            fail(x, "snapshot size over the limit");
            return 0;
        }
        int rc = snapstore_recv_begin(x->st, c->total, NULL, &x->rx);
        if (rc < 0) {
            x->rx = NULL;
            fail(x, strerror(-rc));
            return 0;
        }
        x->index = c->index;
        x->total = c->total;
    } else if (c->index != x->index || c->total != x->total) {
        drop(x, from, now_ms, "another snapshot than the one coming");
        return 0;
    } else if (c->offset != x->received) {
        drop(x, from, now_ms, "not the next bytes");
        return 0;
    }
    int rc = snapstore_recv_chunk(x->rx, c->offset, c->data, c->len);
    if (rc < 0) {
        const chain_damage *d = snapstore_recv_damage(x->rx);
        char why[400];
        if (rc == -EBADMSG && d)
            snprintf(why, sizeof why, "damaged at offset %" PRIu64 ": %s",
                     d->offset, d->reason);
        else
            snprintf(why, sizeof why, "%s", strerror(-rc));
        fail(x, why);
        return 0;
    }
    x->received += c->len;
    x->stats.bytes_received += c->len;
    x->progress_ms = now_ms;
    if (x->received < x->total) {
        if (x->received >= x->asked_to)
            ask(x, now_ms);
        return 0;
    }
    kv *state = NULL;
    snap_info info;
    rc = snapstore_recv_finish(x->st, x->rx, &state, &info);
    if (rc < 0) {
        const chain_damage *d = snapstore_recv_damage(x->rx);
        char why[400];
        if (rc == -EBADMSG && d)
            snprintf(why, sizeof why, "damaged: %s", d->reason);
        else
            snprintf(why, sizeof why, "%s", strerror(-rc));
        fail(x, why);
        return 0;
    }
    xlog(x, "snapshot at index %" PRIu64 " (%" PRIu64 " bytes, %" PRIu64
         " keys) received from node %u in %" PRIu64 " ms", info.index,
         info.file_bytes, info.keys, x->source, now_ms - x->started_ms);
    rx_reset(x);
    x->stats.completed++;
    kv_destroy(x->state);
    x->state = state;
    x->info = info;
    x->done = true;
    return 1;
}

int snapxfer_take(snapxfer *x, kv **state, snap_info *info)
{
    if (!x || !x->done)
        return -ENOENT;
    *state = x->state;
    if (info)
        *info = x->info;
    x->state = NULL;
    x->done = false;
    return 0;
}

void snapxfer_cancel(snapxfer *x)
{
    if (x && x->active)
        fail(x, "cancelled");
}

/* ------------------------------------------------------------ sending */

static session *session_for(snapxfer *x, uint32_t peer, uint64_t now_ms)
{
    session *free_one = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < SNAPXFER_MAX_SESSIONS; i++) {
        session *s = &x->sessions[i];
        if (s->peer == peer)
            return s;
        if (!s->peer && !free_one)
            free_one = s;
        if (s->peer && (!oldest || s->last_ms < oldest->last_ms))
            oldest = s;
    }
    if (!free_one) {
        session_close(x, oldest);
        free_one = oldest;
    }
    free_one->peer = peer;
    free_one->last_ms = now_ms;
    x->stats.sessions++;
    return free_one;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void serve_ask(snapxfer *x, uint32_t from, const wire_snapshot_ask *a,
                      uint64_t now_ms);

/* The time an ask costs the caller's thread (the node's loop) is counted:
 * reading the window from the file, framing it, handing it to the
 * transport. */
void snapxfer_on_ask(snapxfer *x, uint32_t from, const wire_snapshot_ask *a,
                     uint64_t now_ms)
{
    uint64_t t0 = mono_us();
    serve_ask(x, from, a, now_ms);
    uint64_t took = mono_us() - t0;
    x->stats.serve_us += took;
    if (took > x->stats.serve_us_max)
        x->stats.serve_us_max = took;
}

static void serve_ask(snapxfer *x, uint32_t from, const wire_snapshot_ask *a,
                      uint64_t now_ms)
{
    session *s = session_for(x, from, now_ms);
    s->last_ms = now_ms;
    uint64_t want = a->index;
    if (want == 0 && a->offset == 0 && snapstore_count(x->st) > 0)
        want = snapstore_index_at(x->st, 0);   /* a new transfer: newest */
    if (want == 0 && s->reader)
        want = s->index;
    if (!s->reader || s->index != want) {
        if (s->reader)
            snap_reader_close(s->reader);
        s->reader = NULL;
        uint64_t size = 0;
        if (want == 0 ||
            snapstore_reader_open(x->st, want, &s->reader, &size) < 0) {
            s->reader = NULL;
            x->stats.asks_refused++;
            return;
        }
        s->index = want;
        s->size = size;
    }
    x->stats.asks_served++;
    uint64_t end = a->offset + a->len;
    if (end - a->offset > window_bytes(x))
        end = a->offset + window_bytes(x);
    if (end > s->size)
        end = s->size;
    size_t need = x->cfg.chunk_bytes;
    if (x->buf_cap < need) {
        uint8_t *b = realloc(x->buf, need);
        if (!b)
            return;
        x->buf = b;
        x->buf_cap = need;
    }
    uint8_t *data = x->buf;
    for (uint64_t off = a->offset; off < end;) {
        size_t len = end - off < x->cfg.chunk_bytes ? (size_t)(end - off)
                                                     : x->cfg.chunk_bytes;
        int64_t got = snap_reader_read(s->reader, off, data, len);
        if (got <= 0)
            return;
        wire_snapshot c = { .from = x->cfg.self_id, .to = from,
                            .index = s->index, .offset = off,
                            .total = s->size, .len = (uint32_t)got,
                            .data = data };
        c.last = off + (uint64_t)got == s->size;
        size_t flen = wire_snapshot_size(&c);
        uint8_t *frame = malloc(flen);
        if (!frame)
            return;
        size_t n;
        int rc = wire_encode_snapshot_into(&c, frame, flen, &n);
        if (rc == 0)
            rc = x->edges.send(x->edges.arg, from, frame, n);
        free(frame);
        if (rc < 0)
            return;   /* the receiver asks again */
        x->stats.chunks_sent++;
        x->stats.bytes_sent += (uint64_t)got;
        off += (uint64_t)got;
    }
}

void snapxfer_tick(snapxfer *x, uint64_t now_ms)
{
    if (!x)
        return;
    if (x->active) {
        if (now_ms - x->progress_ms >= x->cfg.abandon_ms)
            fail(x, "no progress");
        else if (now_ms - x->ask_ms >= x->cfg.stall_ms &&
                 now_ms - x->progress_ms >= x->cfg.stall_ms)
            ask(x, now_ms);
    }
    for (uint32_t i = 0; i < SNAPXFER_MAX_SESSIONS; i++) {
        session *s = &x->sessions[i];
        if (s->peer && now_ms - s->last_ms >= x->cfg.idle_ms)
            session_close(x, s);
    }
}

void snapxfer_get_stats(const snapxfer *x, snapxfer_stats *st)
{
    *st = x->stats;
    st->active = x->active;
    st->source = x->source;
    st->index = x->index;
    st->received = x->received;
    st->total = x->total;
    st->started_ms = x->started_ms;
}

/*
 * client.c - owns the client handle (see client.h): the ring of writes in
 * flight, the overflow FIFO, the read points and their deadlines, and the
 * deferred calls.
 */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"

/* A write, until its entry is applied. */
typedef struct pending {
    bool used;
    bool answered;          /* invariant 3 */
    bool retry;             /* refused for now: propose it again */
    uint64_t seq;
    uint64_t ticket;
    uint64_t deadline_ms;
    client_done_fn done;
    void *arg;
    uint8_t *op;            /* encoded op until the replica took it */
    uint32_t op_len;
} pending;

/* A write that found the ring full, waiting for room in order. */
typedef struct waiting {
    struct waiting *next;
    bool answered;
    uint64_t ticket;
    uint64_t deadline_ms;
    client_done_fn done;
    void *arg;
    uint8_t *op;
    uint32_t op_len;
} waiting;

/* A read point, until the state reached its read index. */
typedef struct read_wait {
    uint64_t token;
    uint64_t index;         /* valid once ready */
    uint64_t deadline_ms;
    uint64_t after_ticket;  /* this client's writes up to here first */
    client_done_fn done;
    void *arg;
    bool ready;
} read_wait;

/* A call to make at the next client_flush. */
typedef struct deferred {
    struct deferred *next;
    client_done_fn done;
    void *arg;
} deferred;

struct client {
    uint64_t id;
    uint64_t timeout_ms;

    pending *ring;              /* indexed by seq & (window-1) */
    uint32_t window;            /* ring slots, a power of two */
    uint64_t next_seq, low_seq;
    uint64_t to_propose_from;   /* first seq not yet handed out */
    uint32_t n_retry;           /* ring entries with retry set */
    uint64_t next_ticket;
    uint64_t answered_ticket;   /* newest write made at release */
    uint64_t answered_outstanding;
    waiting *wait_head, *wait_tail;
    uint64_t n_waiting, waited_total;

    read_wait *reads;
    uint32_t n_reads;
    uint64_t next_read_token;
    uint64_t *new_reads;        /* tokens not yet handed out */
    uint32_t n_new_reads;

    uint64_t applied;           /* client_serve */
    bool serving;

    deferred *defer_head, *defer_tail;
};

int client_create(uint64_t id, uint64_t timeout_ms, uint32_t window,
                  client **out)
{
    if (window == 0)
        window = CLIENT_MAX_PENDING;
    if (window > CLIENT_MAX_PENDING || (window & (window - 1)))
        return -EINVAL;
    client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->window = window;
    c->ring = calloc(window, sizeof *c->ring);
    c->reads = calloc(CLIENT_MAX_READS, sizeof *c->reads);
    c->new_reads = calloc(CLIENT_MAX_READS, sizeof *c->new_reads);
    if (!c->ring || !c->reads || !c->new_reads) {
        client_destroy(c);
        return -ENOMEM;
    }
    c->id = id;
    c->timeout_ms = timeout_ms;
    c->next_seq = c->low_seq = c->to_propose_from = 1;
    c->next_ticket = 1;
    *out = c;
    return 0;
}

void client_destroy(client *c)
{
    if (!c)
        return;
    if (c->ring)
        for (uint32_t i = 0; i < c->window; i++)
            free(c->ring[i].op);
    for (waiting *w = c->wait_head, *next; w; w = next) {
        next = w->next;
        free(w->op);
        free(w);
    }
    for (deferred *d = c->defer_head, *next; d; d = next) {
        next = d->next;
        free(d);
    }
    free(c->ring);
    free(c->reads);
    free(c->new_reads);
    free(c);
}

uint64_t client_id(const client *c)
{
    return c->id;
}

void client_get_stats(const client *c, client_stats *st)
{
    *st = (client_stats){ .pending = c->next_seq - c->low_seq,
                          .waiting = c->n_waiting,
                          .waited_total = c->waited_total,
                          .answered_outstanding = c->answered_outstanding,
                          .reads = c->n_reads };
}

static pending *pending_at(client *c, uint64_t seq)
{
    if (seq < c->low_seq || seq >= c->next_seq)
        return NULL;
    pending *p = &c->ring[seq & (c->window - 1)];
    return p->used && p->seq == seq ? p : NULL;
}

/* Give the oldest waiting writes the ring slots that are free. */
static void admit_waiting(client *c)
{
    while (c->wait_head && c->next_seq - c->low_seq < c->window) {
        waiting *w = c->wait_head;
        c->wait_head = w->next;
        if (!c->wait_head)
            c->wait_tail = NULL;
        c->n_waiting--;
        uint64_t seq = c->next_seq++;
        pending *p = &c->ring[seq & (c->window - 1)];
        CHECK(!p->used);
        *p = (pending){ .used = true, .answered = w->answered, .seq = seq,
                        .ticket = w->ticket, .deadline_ms = w->deadline_ms,
                        .done = w->done, .arg = w->arg, .op = w->op,
                        .op_len = w->op_len };
        free(w);
    }
}

/* The oldest submission not yet finished (invariant 2). */
static uint64_t low_ticket(const client *c)
{
    if (c->low_seq < c->next_seq)
        return c->ring[c->low_seq & (c->window - 1)].ticket;
    if (c->wait_head)
        return c->wait_head->ticket;
    return c->next_ticket;
}

/* Remove the reads `pick` selects from the table, then answer them: the
 * table is settled before any callback runs. */
static void finish_reads(client *c, bool (*pick)(const client *,
                                                 const read_wait *, void *),
                         void *pick_arg, int result)
{
    read_wait done[64];
    for (;;) {
        uint32_t kept = 0, k = 0;
        for (uint32_t i = 0; i < c->n_reads; i++) {
            if (k < 64 && pick(c, &c->reads[i], pick_arg))
                done[k++] = c->reads[i];
            else
                c->reads[kept++] = c->reads[i];
        }
        c->n_reads = kept;
        for (uint32_t i = 0; i < k; i++)
            done[i].done(done[i].arg, result);
        if (k < 64)
            return;
    }
}

static bool read_is_served(const client *c, const read_wait *r, void *arg)
{
    uint64_t low = *(const uint64_t *)arg;
    return c->serving && r->ready && r->index <= c->applied &&
           low > r->after_ticket;
}

static void serve_reads(client *c)
{
    if (!c->n_reads || !c->serving)
        return;
    uint64_t low = low_ticket(c);
    finish_reads(c, read_is_served, &low, 0);
}

static void pending_finish(client *c, pending *p, int result)
{
    client_done_fn done = p->done;
    void *arg = p->arg;
    if (p->answered)
        c->answered_outstanding--;
    if (p->retry)
        c->n_retry--;
    free(p->op);
    memset(p, 0, sizeof *p);
    while (c->low_seq < c->next_seq &&
           !c->ring[c->low_seq & (c->window - 1)].used)
        c->low_seq++;
    admit_waiting(c);
    if (done)
        done(arg, result);
    serve_reads(c);
}

/* Answer every waiting write that `pick` selects with `result`. */
static void finish_waiting(client *c, bool (*pick)(const waiting *, void *),
                           void *pick_arg, int result)
{
    waiting *keep = NULL, **tail = &keep, *done = NULL, **dtail = &done;
    for (waiting *w = c->wait_head, *next; w; w = next) {
        next = w->next;
        w->next = NULL;
        if (pick(w, pick_arg)) {
            *dtail = w;
            dtail = &w->next;
            c->n_waiting--;
            if (w->answered)
                c->answered_outstanding--;
        } else {
            *tail = w;
            tail = &w->next;
        }
    }
    c->wait_head = keep;
    c->wait_tail = NULL;
    for (waiting *w = keep; w; w = w->next)
        c->wait_tail = w;
    for (waiting *w = done, *next; w; w = next) {
        next = w->next;
        if (w->done)
            w->done(w->arg, result);
        free(w->op);
        free(w);
    }
}

int client_submit(client *c, uint64_t now_ms, const uint8_t *op,
                  uint32_t len, bool answered, client_done_fn done,
                  void *arg)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, op, len);
    uint64_t deadline = now_ms + c->timeout_ms;
    if (c->wait_head || c->next_seq - c->low_seq >= c->window) {
        waiting *w = malloc(sizeof *w);
        if (!w) {
            free(copy);
            return -ENOMEM;
        }
        *w = (waiting){ .answered = answered, .ticket = c->next_ticket,
                        .deadline_ms = deadline, .done = done, .arg = arg,
                        .op = copy, .op_len = len };
        if (c->wait_tail)
            c->wait_tail->next = w;
        else
            c->wait_head = w;
        c->wait_tail = w;
        c->n_waiting++;
        c->waited_total++;
    } else {
        uint64_t seq = c->next_seq++;
        pending *p = &c->ring[seq & (c->window - 1)];
        CHECK(!p->used);
        *p = (pending){ .used = true, .answered = answered, .seq = seq,
                        .ticket = c->next_ticket, .done = done, .arg = arg,
                        .op = copy, .op_len = len, .deadline_ms = deadline };
    }
    if (answered) {
        c->answered_ticket = c->next_ticket;
        c->answered_outstanding++;
    }
    c->next_ticket++;
    return 0;
}

int client_read(client *c, uint64_t now_ms, client_done_fn done, void *arg)
{
    if (c->n_reads >= CLIENT_MAX_READS)
        return -EAGAIN;
    uint64_t token = ++c->next_read_token;
    c->reads[c->n_reads++] = (read_wait){
        .token = token, .done = done, .arg = arg,
        .after_ticket = c->answered_ticket,
        .deadline_ms = now_ms + c->timeout_ms };
    c->new_reads[c->n_new_reads++] = token;
    return 0;
}

int client_read_at(client *c, uint64_t now_ms, uint64_t index,
                   client_done_fn done, void *arg)
{
    if (c->n_reads >= CLIENT_MAX_READS)
        return -EAGAIN;
    c->reads[c->n_reads++] = (read_wait){
        .token = ++c->next_read_token, .done = done, .arg = arg,
        .after_ticket = c->answered_ticket, .index = index, .ready = true,
        .deadline_ms = now_ms + c->timeout_ms };
    return 0;
}

int client_defer(client *c, client_done_fn done, void *arg)
{
    deferred *d = malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    *d = (deferred){ .done = done, .arg = arg };
    if (c->defer_tail)
        c->defer_tail->next = d;
    else
        c->defer_head = d;
    c->defer_tail = d;
    return 0;
}

bool client_has_deferred(const client *c)
{
    return c->defer_head != NULL;
}

/* Run the deferred calls queued so far with `result`; what they queue
 * waits for the next run. */
static void run_deferred(client *c, int result)
{
    deferred *d = c->defer_head;
    c->defer_head = c->defer_tail = NULL;
    while (d) {
        deferred *next = d->next;
        client_done_fn done = d->done;
        void *arg = d->arg;
        free(d);
        done(arg, result);
        d = next;
    }
}

static void propose(client *c, client_propose_fn fn, void *arg,
                    px_request *reqs, uint32_t k)
{
    fn(arg, reqs, k);
    for (uint32_t i = 0; i < k; i++) {
        pending *p = pending_at(c, reqs[i].seq);
        if (p && !p->retry && !p->answered) {   /* invariant 3: a write
                                                   made at release keeps
                                                   its op for another try */
            free(p->op);
            p->op = NULL;
        }
    }
}

/* The new read points to `read`; a read handed out may come back to be
 * asked again: at the next call. */
static void hand_out_reads(client *c, client_read_fn read, void *arg)
{
    uint32_t count = c->n_new_reads;
    if (count)
        read(arg, c->new_reads, count);   /* appends stay behind count */
    memmove(c->new_reads, c->new_reads + count,
            (c->n_new_reads - count) * sizeof *c->new_reads);
    c->n_new_reads -= count;
}

void client_flush(client *c, client_propose_fn fn, client_read_fn read,
                  void *arg)
{
    run_deferred(c, 0);
    px_request reqs[64];
    uint32_t k = 0;
    /* refused last time: once per call (a refusal during this call waits
     * for the next) */
    for (uint64_t s = c->low_seq; c->n_retry && s < c->to_propose_from; s++) {
        pending *p = pending_at(c, s);
        if (!p || !p->retry)
            continue;
        p->retry = false;
        c->n_retry--;
        reqs[k++] = (px_request){ .client_id = c->id, .seq = p->seq,
                                  .ack_seq = c->low_seq, .len = p->op_len,
                                  .op = p->op };
        if (k == 64) {
            propose(c, fn, arg, reqs, k);
            k = 0;
        }
    }
    if (k)
        propose(c, fn, arg, reqs, k);
    while (c->to_propose_from < c->next_seq) {
        k = 0;
        while (k < 64 && c->to_propose_from < c->next_seq) {
            pending *p = pending_at(c, c->to_propose_from++);
            if (!p)
                continue;
            reqs[k++] = (px_request){ .client_id = c->id, .seq = p->seq,
                                      .ack_seq = c->low_seq,
                                      .len = p->op_len, .op = p->op };
        }
        if (k == 0)
            break;
        propose(c, fn, arg, reqs, k);
    }
    hand_out_reads(c, read, arg);
}

bool client_flush_reads(client *c, client_read_fn read, void *arg)
{
    bool any = c->defer_head || (read && c->n_new_reads);
    run_deferred(c, 0);
    if (read)
        hand_out_reads(c, read, arg);
    return any;
}

void client_applied(client *c, uint64_t seq, int result)
{
    pending *p = pending_at(c, seq);
    if (p)
        pending_finish(c, p, result);
}

void client_refused(client *c, uint64_t seq, int status)
{
    pending *p = pending_at(c, seq);
    if (!p)
        return;
    if ((status == -EAGAIN || status == -ENOMEM) && p->op && !p->retry) {
        p->retry = true;
        c->n_retry++;
    } else if (!p->retry) {
        pending_finish(c, p, status);
    }
}

void client_read_point(client *c, uint64_t token, int status,
                       uint64_t index, uint64_t now_ms)
{
    for (uint32_t j = 0; j < c->n_reads; j++) {
        read_wait *r = &c->reads[j];
        if (r->token != token)
            continue;
        if (status == -EAGAIN && now_ms < r->deadline_ms &&
            c->n_new_reads < CLIENT_MAX_READS) {
            c->new_reads[c->n_new_reads++] = token;
        } else if (status < 0) {
            read_wait failed = *r;
            c->reads[j] = c->reads[--c->n_reads];
            failed.done(failed.arg, status == -EAGAIN ? -ETIMEDOUT : status);
        } else {
            r->ready = true;
            r->index = index;
        }
        return;
    }
}

void client_serve(client *c, uint64_t applied, bool serving)
{
    c->applied = applied;
    c->serving = serving;
    serve_reads(c);
}

static bool read_is_expired(const client *c, const read_wait *r, void *arg)
{
    (void)c;
    return r->deadline_ms <= *(const uint64_t *)arg;
}

static bool waiting_is_expired(const waiting *w, void *arg)
{
    return !w->answered && w->deadline_ms <= *(const uint64_t *)arg;
}

static bool waiting_any(const waiting *w, void *arg)
{
    (void)w;
    (void)arg;
    return true;
}

/* Writes whose callers wait fail at their deadline (they may still commit
 * later, as a whole); writes made at release have none (invariant 3). */
void client_expire(client *c, uint64_t now_ms)
{
    if (c->wait_head)
        finish_waiting(c, waiting_is_expired, &now_ms, -ETIMEDOUT);
    for (uint64_t s = c->low_seq; s < c->next_seq; s++) {
        pending *p = pending_at(c, s);
        if (p && !p->answered && p->deadline_ms <= now_ms &&
            s < c->to_propose_from)
            pending_finish(c, p, -ETIMEDOUT);
    }
    finish_reads(c, read_is_expired, &now_ms, -ETIMEDOUT);
}

static bool waiting_caller(const waiting *w, void *arg)
{
    (void)arg;
    return !w->answered;
}

void client_fail_callers(client *c, int result)
{
    run_deferred(c, result);
    finish_waiting(c, waiting_caller, NULL, result);
    for (uint64_t s = c->low_seq; s < c->next_seq; s++) {
        pending *p = pending_at(c, s);
        if (p && !p->answered)
            pending_finish(c, p, result);
    }
    uint64_t all = UINT64_MAX;
    finish_reads(c, read_is_expired, &all, result);
    c->n_new_reads = 0;
}

void client_repropose(client *c)
{
    for (uint64_t s = c->low_seq; s < c->to_propose_from; s++) {
        pending *p = pending_at(c, s);
        if (p && p->op && !p->retry) {
            p->retry = true;
            c->n_retry++;
        }
    }
}

void client_fail_all(client *c, int result)
{
    run_deferred(c, result);
    finish_waiting(c, waiting_any, NULL, result);
    for (uint64_t s = c->low_seq; s < c->next_seq; s++) {
        pending *p = pending_at(c, s);
        if (p)
            pending_finish(c, p, result);
    }
    uint64_t all = UINT64_MAX;
    finish_reads(c, read_is_expired, &all, result);
    c->n_new_reads = 0;
}

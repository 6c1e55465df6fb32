/*
 * forward.c - owns the request queue of one replica: client requests
 * submitted here (PX_EV_PROPOSE) or forwarded to us as leader, until they
 * are seen committed.
 *
 *   PROPOSE/FORWARD --> PENDING --leader: cut into a batch--> PROPOSED
 *                         |  ^                                   |
 *        non-leader:      |  +--- step down / leader change -----+
 *        FORWARD to the   v  |
 *        known leader    SENT --retry_interval_ms--> SENT (re-sent)
 *   any list --request seen in a committed BATCH--> removed
 *
 * Invariants:
 *   1. At most max_pending_requests requests; beyond, PROPOSE answers
 *      px_request_failed -EAGAIN (the client retries) and FORWARD drops
 *      (the forwarder retries).
 *   2. (client_id, seq) is unique in the queue (hash index), so a retried
 *      or re-forwarded request is queued once; duplicates that still reach
 *      the log are answered once by the session table.
 *   3. Every operation is O(1) except the splices on a role change, which
 *      are O(queue) and happen once per change.
 *   4. A request leaves the queue only when a committed BATCH contains it,
 *      never on a timer, so a lost FORWARD or a deposed leader costs a
 *      retry, not the request.
 *   5. Re-forwards back off: after a round of them the wait doubles (up to
 *      PX_RESEND_BACKOFF_MAX retry intervals), until one of our requests
 *      commits or the leader changes.  A leader slow to commit large
 *      values was otherwise sent every one of them again each retry
 *      interval, megabytes each, ahead of its heartbeats.
 */
#include "px_int.h"

static uint32_t px_hash_of(uint64_t client_id, uint64_t seq, uint32_t mask)
{
    uint64_t h = client_id * UINT64_C(0x9E3779B97F4A7C15) ^
                 (seq + UINT64_C(0x632BE59BD9B4E019)) *
                     UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 31;
    return (uint32_t)h & mask;
}

int px_queue_init(px_queue *q, uint32_t cap)
{
    memset(q, 0, sizeof(*q));
    uint32_t hsize = 16;
    while (hsize < 2 * cap)
        hsize <<= 1;
    q->reqs = calloc(cap, sizeof(px_req));
    q->hash = malloc(hsize * sizeof(int32_t));
    if (!q->reqs || !q->hash) {
        free(q->reqs);
        free(q->hash);
        q->reqs = NULL;
        q->hash = NULL;
        return -ENOMEM;
    }
    q->cap = cap;
    q->hash_mask = hsize - 1;
    for (uint32_t i = 0; i < hsize; i++)
        q->hash[i] = -1;
    for (uint32_t i = 0; i < cap; i++) {
        q->reqs[i].list = PX_Q_FREE;
        q->reqs[i].next = i + 1 < cap ? (int32_t)(i + 1) : -1;
    }
    q->free_head = 0;
    for (int l = 0; l < PX_Q_LISTS; l++)
        q->head[l] = q->tail[l] = -1;
    return 0;
}

void px_queue_free(px_queue *q)
{
    if (q->reqs)
        for (uint32_t i = 0; i < q->cap; i++)
            free(q->reqs[i].op);
    free(q->reqs);
    free(q->hash);
    memset(q, 0, sizeof(*q));
}

int32_t px_queue_find(const px_queue *q, uint64_t client_id, uint64_t seq)
{
    uint32_t pos = px_hash_of(client_id, seq, q->hash_mask);
    for (uint32_t n = 0; n <= q->hash_mask; n++) {
        int32_t i = q->hash[pos];
        if (i < 0)
            return -1;
        if (q->reqs[i].client_id == client_id && q->reqs[i].seq == seq)
            return i;
        pos = (pos + 1) & q->hash_mask;
    }
    return -1;
}

static void px_link(px_queue *q, int32_t i, uint8_t list)
{
    px_req *x = &q->reqs[i];
    x->list = list;
    x->next = -1;
    x->prev = q->tail[list];
    if (q->tail[list] >= 0)
        q->reqs[q->tail[list]].next = i;
    else
        q->head[list] = i;
    q->tail[list] = i;
    q->n[list]++;
}

static void px_unlink(px_queue *q, int32_t i)
{
    px_req *x = &q->reqs[i];
    if (x->prev >= 0)
        q->reqs[x->prev].next = x->next;
    else
        q->head[x->list] = x->next;
    if (x->next >= 0)
        q->reqs[x->next].prev = x->prev;
    else
        q->tail[x->list] = x->prev;
    q->n[x->list]--;
}

int px_queue_add(px_queue *q, const px_request *req, uint8_t list)
{
    if (px_queue_find(q, req->client_id, req->seq) >= 0)
        return -EEXIST;
    if (q->count == q->cap || q->free_head < 0)
        return -EAGAIN;
    uint8_t *op = NULL;
    if (req->len) {
        op = malloc(req->len);
        if (!op)
            return -ENOMEM;
        memcpy(op, req->op, req->len);
    }
    int32_t i = q->free_head;
    px_req *x = &q->reqs[i];
    q->free_head = x->next;
    x->client_id = req->client_id;
    x->seq = req->seq;
    x->ack_seq = req->ack_seq;
    x->len = req->len;
    x->op = op;
    x->sent_ms = 0;
    x->origin = 0;
    px_link(q, i, list);
    uint32_t pos = px_hash_of(req->client_id, req->seq, q->hash_mask);
    while (q->hash[pos] >= 0)
        pos = (pos + 1) & q->hash_mask;
    q->hash[pos] = i;
    q->count++;
    return i;
}

/* Delete from the linear-probing index by backward shift. */
static void px_hash_delete(px_queue *q, int32_t idx)
{
    const px_req *x = &q->reqs[idx];
    uint32_t pos = px_hash_of(x->client_id, x->seq, q->hash_mask);
    while (q->hash[pos] != idx)
        pos = (pos + 1) & q->hash_mask;
    q->hash[pos] = -1;
    uint32_t j = pos;
    for (;;) {
        j = (j + 1) & q->hash_mask;
        int32_t k = q->hash[j];
        if (k < 0)
            break;
        uint32_t home = px_hash_of(q->reqs[k].client_id, q->reqs[k].seq,
                                   q->hash_mask);
        /* move k back unless its home lies cyclically in (pos, j] */
        bool stays = pos <= j ? (home > pos && home <= j)
                              : (home > pos || home <= j);
        if (!stays) {
            q->hash[pos] = k;
            q->hash[j] = -1;
            pos = j;
        }
    }
}

void px_queue_remove(px_queue *q, int32_t idx)
{
    px_req *x = &q->reqs[idx];
    px_hash_delete(q, idx);
    px_unlink(q, idx);
    free(x->op);
    x->op = NULL;
    x->list = PX_Q_FREE;
    x->next = q->free_head;
    q->free_head = idx;
    q->count--;
}

void px_queue_move(px_queue *q, int32_t idx, uint8_t list)
{
    px_unlink(q, idx);
    px_link(q, idx, list);
}

void px_queue_splice(px_queue *q, uint8_t from, uint8_t to)
{
    uint32_t n = q->n[from];
    for (uint32_t k = 0; k < n && q->head[from] >= 0; k++)
        px_queue_move(q, q->head[from], to);
}

/* ---------------------------------------------------------------- events */

void px_on_propose(px_replica *r, const px_request *reqs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const px_request *x = &reqs[i];
        if (x->seq == 0 || (x->len && !x->op)) {
            px_out_failed(r, x->client_id, x->seq, -EINVAL);
            continue;
        }
        if (x->len > PX_MAX_VALUE_BYTES - 64) {
            px_out_failed(r, x->client_id, x->seq, -EMSGSIZE);
            continue;
        }
        int rc = px_queue_add(&r->q, x, PX_Q_PENDING);
        if (rc == -EAGAIN || rc == -ENOMEM)
            px_out_failed(r, x->client_id, x->seq, rc);
    }
}

void px_on_forward(px_replica *r, const px_msg *m)
{
    if (r->role != PX_LEADER && r->role != PX_CANDIDATE) {
        r->stats.msgs_ignored++; /* the forwarder re-sends to the leader */
        return;
    }
    for (uint32_t i = 0; i < m->n_requests; i++) {
        const px_request *req = &m->requests[i];
        int32_t k = px_queue_add(&r->q, req, PX_Q_PENDING);
        if (k == -EEXIST)
            k = px_queue_find(&r->q, req->client_id, req->seq);
        if (k >= 0)
            r->q.reqs[k].origin = m->from; /* told of the commit at once */
    }
}

void px_forward_leader_changed(px_replica *r)
{
    r->fwd_wait_ms = r->opt.retry_interval_ms;
    px_queue_splice(&r->q, PX_Q_SENT, PX_Q_PENDING);
}

void px_forward_committed(px_replica *r, const px_cell *c)
{
    uint32_t off = 0;
    px_request req;
    for (uint32_t n = 0; n <= PX_MAX_VALUE_BYTES / 28; n++) {
        if (px_batch_next(c->data, c->len, &off, &req) != 1)
            break;
        r->stats.requests_committed++;
        int32_t i = px_queue_find(&r->q, req.client_id, req.seq);
        if (i >= 0) {
            px_queue_remove(&r->q, i);
            r->fwd_wait_ms = r->opt.retry_interval_ms;   /* invariant 5 */
        }
    }
}

static void px_forward_one(px_replica *r, int *msg, uint32_t *n_in_msg,
                           uint64_t *bytes, int32_t i)
{
    px_req *x = &r->q.reqs[i];
    uint64_t b = px_batch_req_bytes(x->len);
    if (*msg < 0 || *n_in_msg >= r->opt.batch_max_requests ||
        *n_in_msg >= PX_MSG_MAX_REQUESTS ||
        (*n_in_msg > 0 && *bytes + b > r->opt.batch_max_bytes)) {
        *msg = px_out_msg(r, PX_MSG_FORWARD, r->leader_id, r->ballot);
        *n_in_msg = 0;
        *bytes = 0;
    }
    if (px_out_request(r, *msg, x) == 0) {
        (*n_in_msg)++;
        *bytes += b;
        r->stats.requests_forwarded++;
    }
    x->sent_ms = r->now_ms;
    px_queue_move(&r->q, i, PX_Q_SENT);
}

void px_forward_pump(px_replica *r)
{
    if (r->role == PX_LEADER || r->leader_id == 0 ||
        r->leader_id == r->self)
        return;
    px_queue *q = &r->q;
    int msg = -1;
    uint32_t n_in_msg = 0;
    uint64_t bytes = 0;
    uint32_t n = q->n[PX_Q_PENDING];
    for (uint32_t k = 0; k < n && q->head[PX_Q_PENDING] >= 0; k++)
        px_forward_one(r, &msg, &n_in_msg, &bytes, q->head[PX_Q_PENDING]);
    if (r->fwd_wait_ms < r->opt.retry_interval_ms)
        r->fwd_wait_ms = r->opt.retry_interval_ms;
    bool resent = false;
    n = q->n[PX_Q_SENT];
    for (uint32_t k = 0; k < n && q->head[PX_Q_SENT] >= 0; k++) {
        int32_t i = q->head[PX_Q_SENT];
        if (r->now_ms - q->reqs[i].sent_ms < r->fwd_wait_ms)
            break;
        px_forward_one(r, &msg, &n_in_msg, &bytes, i);
        resent = true;
    }
    if (resent && r->fwd_wait_ms < PX_RESEND_BACKOFF_MAX * r->opt.retry_interval_ms)
        r->fwd_wait_ms *= 2;   /* invariant 5 */
}

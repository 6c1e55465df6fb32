/*
 * log.c - owns the slot ring and the persistence bookkeeping.
 *
 * The ring holds, for one replica, the last retain_slots committed values
 * (to serve catch-up) and every accepted value above the commit index:
 *
 *      first_retained        commit              first_retained + cap
 *      |<--- retained, committed --->|<--- accepted, not yet chosen --->|
 *
 * Invariants:
 *   1. A valid cell for slot s lives at cells[s & mask] with cell.slot == s
 *      and first_retained <= s < first_retained + cap; every other cell is
 *      empty (slot 0).  Lookup and store are O(1).
 *   2. first_retained <= commit + 1; after compaction (start of each step)
 *      at most retain_slots committed slots are kept, holding at most
 *      retain_bytes bytes unless the newest one alone is larger (values of
 *      up to PX_MAX_VALUE_BYTES would otherwise keep gigabytes for a
 *      catch-up the host's chain can serve as well).  Compaction never
 *      runs in the middle of a step, so px_output pointers into cells stay
 *      valid until the next px_step.
 *   3. A cell is written at most once per step, so an entry handed out in
 *      px_output.accepts/committed/msgs still points at live bytes.
 *   4. Every output that asks the host to persist something has a
 *      persist_id and a record (lo..hi, promise); PX_EV_PERSISTED marks
 *      durable exactly the cells still carrying that persist_id.  At most
 *      PX_PERSIST_RECORDS are outstanding; callers that would create state
 *      to persist refuse (ignore the message, delay proposals) when full.
 */
#include "px_int.h"

static uint64_t px_pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n && p < (UINT64_C(1) << 40))
        p <<= 1;
    return p;
}

int px_log_init(px_replica *r, uint64_t min_ahead)
{
    r->cap = px_pow2_at_least((uint64_t)r->opt.retain_slots + min_ahead);
    r->mask = r->cap - 1;
    r->cells = calloc(r->cap, sizeof(px_cell));
    return r->cells ? 0 : -ENOMEM;
}

void px_cell_release(px_cell *c)
{
    c->slot = 0;
    c->len = 0;
    c->durable = false;
    c->chosen = false;
    c->persist_id = 0;
    if (c->cap > PX_KEEP_BUFFER_BYTES) {
        free(c->data);
        c->data = NULL;
        c->cap = 0;
    }
}

void px_log_free(px_replica *r)
{
    if (!r->cells)
        return;
    for (uint64_t i = 0; i < r->cap; i++)
        free(r->cells[i].data);
    free(r->cells);
    r->cells = NULL;
}

bool px_log_fits(const px_replica *r, uint64_t slot)
{
    return slot >= r->first_retained && slot - r->first_retained < r->cap;
}

px_cell *px_log_get(const px_replica *r, uint64_t slot)
{
    if (!px_log_fits(r, slot))
        return NULL;
    px_cell *c = &r->cells[slot & r->mask];
    return c->slot == slot ? c : NULL;
}

/* Copy `len` bytes into the cell's buffer, growing it if needed. */
int px_cell_set(px_cell *c, uint32_t len, const uint8_t *data)
{
    if (len > c->cap) {
        uint8_t *p = malloc(len);
        if (!p)
            return -ENOMEM;
        free(c->data);
        c->data = p;
        c->cap = len;
    }
    if (len && data && data != c->data)
        memmove(c->data, data, len);
    c->len = len;
    return 0;
}

int px_log_put(px_replica *r, uint64_t slot, px_ballot b, uint64_t time_ms,
               uint8_t kind, uint32_t len, const uint8_t *data, px_cell **out)
{
    if (!px_log_fits(r, slot))
        return -ENOSPC;
    px_cell *c = &r->cells[slot & r->mask];
    if (c->slot != slot)
        px_cell_release(c);
    int rc = px_cell_set(c, len, data);
    if (rc < 0)
        return rc;
    c->slot = slot;
    c->ballot = b;
    c->time_ms = time_ms;
    c->kind = kind;
    c->durable = false;
    c->chosen = false;
    c->persist_id = 0;
    if (slot > r->log_max)
        r->log_max = slot;
    if (out)
        *out = c;
    return 0;
}

void px_log_compact(px_replica *r)
{
    if (r->counted_to + 1 < r->first_retained) {
        /* px_log_drop_through released what was counted */
        r->counted_to = r->first_retained - 1;
        r->retained_bytes = 0;
    }
    while (r->counted_to < r->commit) {
        px_cell *c = px_log_get(r, ++r->counted_to);
        if (c)
            r->retained_bytes += c->len;
    }
    while (r->first_retained + r->opt.retain_slots <= r->commit ||
           (r->retained_bytes > r->opt.retain_bytes &&
            r->first_retained < r->commit)) {
        px_cell *c = px_log_get(r, r->first_retained);
        if (c) {
            PX_ASSERT(r->retained_bytes >= c->len);
            r->retained_bytes -= c->len;
            px_cell_release(c);
        }
        r->first_retained++;
    }
}

/* Forget every slot <= `slot` (a snapshot covers them). */
void px_log_drop_through(px_replica *r, uint64_t slot)
{
    for (uint64_t i = 0; i < r->cap; i++) {
        px_cell *c = &r->cells[i];
        if (c->slot && c->slot <= slot)
            px_cell_release(c);
    }
    if (slot + 1 > r->first_retained)
        r->first_retained = slot + 1;
}

void px_entry_from_cell(px_entry *e, const px_cell *c)
{
    e->slot = c->slot;
    e->ballot = c->ballot;
    e->time_ms = c->time_ms;
    e->kind = c->kind;
    e->len = c->len;
    e->data = c->len ? c->data : NULL;
}

/* ------------------------------------------------------------ persistence */

bool px_persist_room(const px_replica *r)
{
    return r->cur_persist_id || r->rec_count < PX_PERSIST_RECORDS;
}

uint64_t px_persist_cur(px_replica *r)
{
    if (!r->cur_persist_id) {
        r->cur_persist_id = ++r->next_persist_id;
        r->cur_lo = UINT64_MAX;
        r->cur_hi = 0;
    }
    return r->cur_persist_id;
}

void px_persist_promise(px_replica *r)
{
    r->out.persist_promise = true;
    r->out.promise = r->promise;
    px_persist_cur(r);
}

void px_persist_accept(px_replica *r, px_cell *c)
{
    px_outbuf *o = &r->out;
    if (o->n_accepts == o->cap_accepts) {
        uint32_t n = o->cap_accepts ? o->cap_accepts * 2 : 64;
        px_entry *p = realloc(o->accepts, n * sizeof(*p));
        if (!p) {
            o->error = -ENOMEM;
            return;
        }
        o->accepts = p;
        o->cap_accepts = n;
    }
    c->persist_id = px_persist_cur(r);
    c->durable = false;
    px_entry_from_cell(&o->accepts[o->n_accepts++], c);
    if (c->slot < r->cur_lo)
        r->cur_lo = c->slot;
    if (c->slot > r->cur_hi)
        r->cur_hi = c->slot;
}

/* End of step: remember what this output's persist_id covers. */
void px_persist_finish(px_replica *r)
{
    if (!r->cur_persist_id)
        return;
    if (r->rec_count == PX_PERSIST_RECORDS) {
        /* cannot happen: callers check px_persist_room; keep the newest */
        r->rec_head = (r->rec_head + 1) % PX_PERSIST_RECORDS;
        r->rec_count--;
    }
    px_persist_rec *rec =
        &r->recs[(r->rec_head + r->rec_count) % PX_PERSIST_RECORDS];
    rec->id = r->cur_persist_id;
    rec->lo = r->cur_lo;
    rec->hi = r->cur_hi;
    rec->has_promise = r->out.persist_promise;
    rec->promise = r->out.promise;
    r->rec_count++;
    r->cur_persist_id = 0;
}

/* PX_EV_PERSISTED: mark durable what `id` covered.  Unknown ids (a stale
 * or repeated report) are ignored. */
void px_persisted(px_replica *r, uint64_t id)
{
    px_persist_rec *rec = NULL;
    for (uint32_t i = 0; i < r->rec_count; i++) {
        px_persist_rec *x = &r->recs[(r->rec_head + i) % PX_PERSIST_RECORDS];
        if (x->id == id) {
            rec = x;
            break;
        }
    }
    if (!rec || id == 0)
        return;
    if (rec->has_promise &&
        px_ballot_cmp(rec->promise, r->durable_promise) > 0)
        r->durable_promise = rec->promise;
    for (uint64_t s = rec->lo; s <= rec->hi && rec->lo <= rec->hi; s++) {
        px_cell *c = px_log_get(r, s);
        if (c && c->persist_id == id)
            c->durable = true;
        if (s == UINT64_MAX)
            break;
    }
    rec->id = 0;
    while (r->rec_count &&
           r->recs[r->rec_head].id == 0) {
        r->rec_head = (r->rec_head + 1) % PX_PERSIST_RECORDS;
        r->rec_count--;
    }
}

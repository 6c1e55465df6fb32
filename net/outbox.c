/*
 * outbox.c - owns the messages held until a persist is durable (see
 * outbox.h for the invariants).
 */
#include "outbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_MERGE_WINDOW 8   /* newest held messages searched (inv. 3) */

void outbox_init(outbox *o, uint32_t max)
{
    memset(o, 0, sizeof *o);
    o->max = max;
}

void outbox_free(outbox *o)
{
    for (uint32_t i = 0; i < o->count; i++)
        free(o->items[(o->head + i) % o->cap].msg);
    free(o->items);
    o->items = NULL;
    o->count = o->cap = o->head = 0;
}

bool outbox_vouches(const px_msg *m)
{
    switch (m->type) {
    case PX_MSG_PROMISE:
    case PX_MSG_ACCEPTED:
    case PX_MSG_REJECT:
    case PX_MSG_HEARTBEAT_ACK:
        return true;
    default:
        return false;
    }
}

static outbox_item *outbox_at(outbox *o, uint32_t i)
{
    return &o->items[(o->head + i) % o->cap];
}

/* Invariant 3.  The replaced message keeps its place and waits for the
 * larger tag, which delays nothing behind it beyond what FIFO release
 * would. */
static bool outbox_supersede(outbox *o, const px_msg *m, uint64_t after)
{
    if (m->type != PX_MSG_ACCEPTED)
        return false;
    for (uint32_t k = 0; k < o->count && k < OUTBOX_MERGE_WINDOW; k++) {
        outbox_item *h = outbox_at(o, o->count - 1 - k);
        px_msg *old = h->msg;
        if (old->type != PX_MSG_ACCEPTED || old->to != m->to ||
            px_ballot_cmp(old->ballot, m->ballot) != 0)
            continue;
        if (old->aux > m->aux || old->slot > m->slot)
            return false;
        *old = *m;
        old->entries = NULL;    /* an ACCEPTED carries none */
        old->n_entries = 0;
        old->requests = NULL;
        old->n_requests = 0;
        if (after > h->after)
            h->after = after;
        o->superseded++;
        return true;
    }
    return false;
}

static int outbox_grow(outbox *o)
{
    uint32_t cap = o->cap ? o->cap * 2 : 256;
    if (cap > o->max)
        cap = o->max;
    outbox_item *items = malloc(cap * sizeof *items);
    if (!items)
        return -ENOMEM;
    for (uint32_t i = 0; i < o->count; i++)
        items[i] = *outbox_at(o, i);
    free(o->items);
    o->items = items;
    o->cap = cap;
    o->head = 0;
    return 0;
}

int outbox_hold(outbox *o, const px_msg *m, uint64_t after)
{
    if (outbox_supersede(o, m, after))
        return 0;
    if (o->count == o->cap) {
        if (o->cap >= o->max) {
            o->dropped++;
            return -ENOBUFS;
        }
        if (outbox_grow(o) < 0) {
            o->dropped++;
            return -ENOMEM;
        }
    }
    px_msg *copy = px_msg_copy(m);
    if (!copy) {
        o->dropped++;
        return -ENOMEM;
    }
    *outbox_at(o, o->count) = (outbox_item){ .msg = copy, .after = after };
    o->count++;
    return 0;
}

void outbox_release(outbox *o, uint64_t durable, outbox_send_fn send,
                    void *arg)
{
    while (o->count > 0) {
        outbox_item *h = outbox_at(o, 0);
        if (h->after > durable)
            return;
        px_msg *m = h->msg;
        o->head = (o->head + 1) % o->cap;
        o->count--;
        send(arg, m);
        free(m);
    }
}

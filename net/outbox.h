/*
 * outbox.h - messages of the replica that must not leave before a persist
 * is durable (DESIGN.md invariant 2).
 *
 * The node tags each message with the newest persist id issued when the
 * replica produced it; the outbox keeps it until that id is durable, then
 * hands it to the transport.  Persist ids increase and fdatasyncs complete
 * in order, so release is FIFO.
 *
 * Invariants:
 *   1. Messages leave in the order they were held; none leaves before the
 *      durable persist id reached its tag.
 *   2. At most `max` messages are held; beyond, a message is dropped and
 *      counted (the replica re-sends what matters).
 *   3. A held ACCEPTED to the same node in the same ballot whose claim the
 *      new one covers is replaced by the new one, which takes the larger
 *      tag: claims only grow, so one ACCEPTED per group commit says all.
 */
#ifndef PAXOSFS_OUTBOX_H
#define PAXOSFS_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "../consensus/px.h"

typedef struct outbox_item {
    px_msg *msg;            /* px_msg_copy, owned */
    uint64_t after;         /* persist id that must be durable first */
} outbox_item;

typedef struct outbox {
    outbox_item *items;     /* ring */
    uint32_t head, count, cap;
    uint32_t max;
    uint64_t dropped;       /* over the bound or out of memory */
    uint64_t superseded;    /* ACCEPTEDs replaced by a later one */
} outbox;

typedef void (*outbox_send_fn)(void *arg, const px_msg *m);

void outbox_init(outbox *o, uint32_t max);
void outbox_free(outbox *o);

/* Does `m` vouch for this node's acceptor state (a promise, an
 * acceptance, "no higher ballot promised": PROMISE, ACCEPTED, REJECT,
 * HEARTBEAT_ACK)?  Only those wait for a persist.  Proposer and learner
 * messages (PREPARE, ACCEPT, HEARTBEAT, COMMIT, catch-up, forwarding)
 * vouch for nothing on this disk, so the leader's ACCEPT goes out while
 * its own fdatasync runs: the disk writes of leader and followers overlap,
 * and the leader counts its own vote only after PX_EV_PERSISTED. */
bool outbox_vouches(const px_msg *m);

/* Keep a copy of `m` until persist id `after` is durable (invariant 3 may
 * merge it into a held ACCEPTED).  0, or -ENOBUFS / -ENOMEM when it was
 * dropped and counted. */
int outbox_hold(outbox *o, const px_msg *m, uint64_t after);

/* Hand `send`, in order, every held message whose tag is <= durable. */
void outbox_release(outbox *o, uint64_t durable, outbox_send_fn send,
                    void *arg);

#endif

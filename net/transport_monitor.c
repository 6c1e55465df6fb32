/*
 * transport_monitor.c - the ROUTER's connection monitor (transport.h
 * invariant 5): every connection, authenticated or not, is tracked by
 * its socket descriptor from accept through handshake to close, so that
 * refused connections of every kind are counted and logged.
 */
#include "transport_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ connection monitor */

static uint8_t *conn_slot(transport *t, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= t->conn_cap) {
        size_t cap = t->conn_cap ? t->conn_cap : 256;
        while (cap <= (size_t)fd)
            cap *= 2;
        uint8_t *c = realloc(t->conn, cap);
        if (!c)
            return NULL;
        memset(c + t->conn_cap, CONN_NONE, cap - t->conn_cap);
        t->conn = c;
        t->conn_cap = cap;
    }
    return &t->conn[fd];
}

static void conn_set(transport *t, uint8_t *c, uint8_t state)
{
    if (*c == CONN_HANDSHAKE)
        t->in_handshake--;
    if (state == CONN_HANDSHAKE)
        t->in_handshake++;
    *c = state;
}

/* libzmq names the descriptor of a finished handshake nowhere; the only
 * connection still in its handshake must be the one. */
static void conn_up_unplaced(transport *t)
{
    if (t->in_handshake == 1) {
        for (size_t fd = 0; fd < t->conn_cap; fd++) {
            if (t->conn[fd] == CONN_HANDSHAKE) {
                conn_set(t, &t->conn[fd], CONN_UP);
                return;
            }
        }
    }
    t->unplaced_ups++;
}

/* A frame arrived on descriptor fd: its handshake finished. */
void transport_conn_seen(transport *t, int fd)
{
    uint8_t *c = conn_slot(t, fd);
    if (c && *c == CONN_HANDSHAKE) {
        conn_set(t, c, CONN_UP);
        if (t->unplaced_ups)
            t->unplaced_ups--;
    }
}

static void conn_closed(transport *t, int fd)
{
    uint8_t *c = conn_slot(t, fd);
    if (!c || *c != CONN_HANDSHAKE) {
        if (c)
            conn_set(t, c, CONN_NONE);
        return;
    }
    conn_set(t, c, CONN_NONE);
    if (t->unclosed_failures) {
        t->unclosed_failures--;    /* counted with its failure event */
    } else if (t->unplaced_ups) {
        t->unplaced_ups--;         /* it finished, then closed */
    } else {
        t->conns.dropped++;        /* closed in its handshake, silently */
        t->conns.rejected++;
    }
}

static void conn_failed(transport *t, uint64_t *kind, uint64_t now_ms,
                        const char *why, uint32_t value)
{
    (*kind)++;
    t->conns.rejected++;
    t->unclosed_failures++;
    if (now_ms - t->last_reject_log_ms >= TRANSPORT_LOG_INTERVAL_MS) {
        t->last_reject_log_ms = now_ms;
        fprintf(stderr, "paxosfs: node %u: refused a connection: %s (%#x); "
                "%" PRIu64 " refused so far\n", t->self_id, why, value,
                t->conns.rejected);
    }
}

/* One monitor event: [u16 event, u32 value] then the endpoint.  False
 * when none was waiting. */
bool transport_monitor_one(transport *t, uint64_t now_ms)
{
    zmq_msg_t ev, ep;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, t->monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        return false;
    }
    bool more = zmq_msg_more(&ev);
    while (more) {       /* the endpoint (and nothing else, in v1) */
        zmq_msg_init(&ep);
        if (zmq_msg_recv(&ep, t->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ep);
            break;
        }
        more = zmq_msg_more(&ep);
        zmq_msg_close(&ep);
    }
    if (zmq_msg_size(&ev) == 6) {
        const uint8_t *b = zmq_msg_data(&ev);
        uint16_t event;
        uint32_t value;
        memcpy(&event, b, 2);     /* libzmq writes both in host order */
        memcpy(&value, b + 2, 4);
        uint8_t *c;
        switch (event) {
        case ZMQ_EVENT_ACCEPTED:
            t->conns.accepted++;
            c = conn_slot(t, (int)value);
            if (c)
                conn_set(t, c, CONN_HANDSHAKE);
            break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            t->conns.handshakes++;
            conn_up_unplaced(t);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            conn_failed(t, &t->conns.failed_protocol, now_ms,
                        "handshake protocol error (no CURVE, wrong server "
                        "key or malformed)", value);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            conn_failed(t, &t->conns.failed_auth, now_ms,
                        "not the cluster key", value);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            conn_failed(t, &t->conns.failed_other, now_ms,
                        "handshake timed out or reset", value);
            break;
        case ZMQ_EVENT_DISCONNECTED:
            conn_closed(t, (int)value);
            break;
        default:
            break;
        }
    }
    zmq_msg_close(&ev);
    return true;
}


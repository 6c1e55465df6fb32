/*
 * test_net_transport.c - the transport's handling of what arrives: frames
 * in pieces (net/wire.h) joined per connection, pieces that do not fit
 * (no start, a frame cut short, bad flags, sizes that do not match)
 * dropped and counted, a large frame between two transports, and the
 * per-peer catch-up budget (transport.h invariant 6).  Real ZeroMQ sockets
 * on 127.0.0.1, no key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../../net/transport.h"
#include "../../net/wire.h"

typedef struct got {
    uint32_t n;
    uint8_t type[64];
    uint32_t n_entries[64];
    uint32_t len0[64];
    uint8_t byte0[64];
} got;

static void on_msg(void *arg, const px_msg *m)
{
    got *g = arg;
    assert_true(g->n < 64);
    g->type[g->n] = m->type;
    g->n_entries[g->n] = m->n_entries;
    g->len0[g->n] = m->n_entries ? m->entries[0].len : 0;
    g->byte0[g->n] = m->n_entries && m->entries[0].len ? m->entries[0].data[7] : 0;
    g->n++;
}

static void on_head(void *arg, uint32_t from, uint64_t index,
                    const uint8_t hash[PX_HASH_BYTES])
{
    (void)arg, (void)from, (void)index, (void)hash;
}

/* Two free ports on 127.0.0.1 (both held while the second is chosen, so
 * they differ). */
static void free_ports(uint16_t out[2])
{
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(bind(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        socklen_t len = sizeof a;
        assert_int_equal(getsockname(fds[i], (struct sockaddr *)&a, &len), 0);
        out[i] = ntohs(a.sin_port);
    }
    close(fds[0]);
    close(fds[1]);
}

typedef struct rig {
    void *ctx;
    transport *t;               /* node 1 */
    void *raw;                  /* a DEALER speaking for node 2 */
    net_peer_addr peers[2];
    got g;
} rig;

static void rig_open(rig *r)
{
    memset(r, 0, sizeof *r);
    r->ctx = zmq_ctx_new();
    assert_non_null(r->ctx);
    uint16_t ports[2];
    free_ports(ports);
    for (int i = 0; i < 2; i++) {
        r->peers[i].id = (uint32_t)i + 1;
        strcpy(r->peers[i].host, "127.0.0.1");
        r->peers[i].port = ports[i];
    }
    char err[256];
    assert_int_equal(transport_open(r->ctx, 1, r->peers, 2, NULL, &r->t, err,
                                    sizeof err), 0);
    int fds[TRANSPORT_POLL_FDS];
    assert_true(transport_poll_fds(r->t, fds, TRANSPORT_POLL_FDS) >= 2);
    r->raw = zmq_socket(r->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(r->raw, ZMQ_LINGER, &zero, sizeof zero);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%u", r->peers[0].port);
    assert_int_equal(zmq_connect(r->raw, ep), 0);
}

static void rig_close(rig *r)
{
    zmq_close(r->raw);
    transport_close(r->t);
    zmq_ctx_term(r->ctx);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Receive until `want` messages arrived (or 5 s passed). */
static void pump(rig *r, uint32_t want)
{
    uint64_t end = now_ms() + 5000;
    while (r->g.n < want && now_ms() < end) {
        transport_receive(r->t, ~0u, now_ms(), on_msg, on_head, &r->g);
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
    /* and whatever else is on its way */
    for (int i = 0; i < 50; i++) {
        transport_receive(r->t, ~0u, now_ms(), on_msg, on_head, &r->g);
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
}

static void send_piece(rig *r, uint8_t flags, const uint8_t *data, size_t n)
{
    uint8_t *buf = malloc(n + 1);
    assert_non_null(buf);
    buf[0] = flags;
    memcpy(buf + 1, data, n);
    assert_int_equal(zmq_send(r->raw, buf, n + 1, 0), (int)(n + 1));
    free(buf);
}

/* An ACCEPT from node 2 to node 1 carrying one entry of `len` bytes whose
 * 8th byte is `mark`; *out malloc'ed. */
static size_t accept_frame(uint32_t len, uint8_t mark, uint8_t **out)
{
    uint8_t *data = calloc(1, len);
    assert_non_null(data);
    data[7] = mark;
    px_entry e = { .slot = 1, .ballot = { 1, 2 }, .kind = PX_ENTRY_NOOP,
                   .len = len, .data = data };
    px_msg m = { .type = PX_MSG_ACCEPT, .from = 2, .to = 1,
                 .ballot = { 1, 2 }, .n_entries = 1, .entries = &e };
    size_t flen = 0;
    assert_int_equal(wire_encode_paxos(&m, out, &flen), 0);
    free(data);
    return flen;
}

/* Send `frame` in pieces as transport.c does. */
static void send_frame(rig *r, const uint8_t *frame, size_t len)
{
    for (size_t off = 0; off < len; off += WIRE_PART_BYTES) {
        size_t n = len - off > WIRE_PART_BYTES ? WIRE_PART_BYTES : len - off;
        send_piece(r, (uint8_t)((off == 0 ? WIRE_PIECE_FIRST : 0) |
                                (off + n == len ? WIRE_PIECE_LAST : 0)),
                   frame + off, n);
    }
}

static void test_pieces_are_joined_and_misfits_dropped(void **state)
{
    (void)state;
    rig r;
    rig_open(&r);
    uint8_t *big = NULL, *small = NULL;
    size_t big_len = accept_frame(200000, 0xa1, &big);      /* 4 pieces */
    size_t small_len = accept_frame(10, 0xb2, &small);      /* 1 piece */

    send_frame(&r, big, big_len);
    send_frame(&r, small, small_len);
    pump(&r, 2);
    assert_int_equal(r.g.n, 2);
    assert_int_equal(r.g.len0[0], 200000);
    assert_int_equal(r.g.byte0[0], 0xa1);
    assert_int_equal(r.g.byte0[1], 0xb2);
    uint64_t drops = transport_unknown_drops(r.t);

    /* a frame cut short (its sender's queue was full), then a whole one:
     * the first is dropped, the second arrives */
    send_piece(&r, WIRE_PIECE_FIRST, big, WIRE_PART_BYTES);
    send_piece(&r, 0, big + WIRE_PART_BYTES, WIRE_PART_BYTES);
    send_frame(&r, big, big_len);
    pump(&r, 3);
    assert_int_equal(r.g.n, 3);
    assert_int_equal(r.g.len0[2], 200000);
    assert_int_equal(transport_unknown_drops(r.t), drops + 1);

    /* pieces that fit nothing: a continuation without a start, a last
     * piece alone, unknown flag bits, an empty message, a first piece
     * shorter than a full piece, a last piece overrunning the size its
     * header declared; then a good frame still arrives */
    send_piece(&r, 0, big + WIRE_PART_BYTES, WIRE_PART_BYTES);
    send_piece(&r, WIRE_PIECE_LAST, big + 3 * WIRE_PART_BYTES,
               big_len - 3 * WIRE_PART_BYTES);
    send_piece(&r, 4 | WIRE_PIECE_FIRST | WIRE_PIECE_LAST, small, small_len);
    assert_int_equal(zmq_send(r.raw, "", 0, 0), 0);
    send_piece(&r, WIRE_PIECE_FIRST, big, 100);
    send_piece(&r, WIRE_PIECE_FIRST, big, WIRE_PART_BYTES);
    send_piece(&r, 0, big + WIRE_PART_BYTES, WIRE_PART_BYTES);
    send_piece(&r, 0, big + 2 * WIRE_PART_BYTES, WIRE_PART_BYTES);
    uint8_t *zeros = calloc(1, WIRE_PART_BYTES);
    assert_non_null(zeros);
    send_piece(&r, WIRE_PIECE_LAST, zeros, WIRE_PART_BYTES);
    free(zeros);
    send_frame(&r, small, small_len);
    pump(&r, 4);
    assert_int_equal(r.g.n, 4);
    assert_int_equal(r.g.byte0[3], 0xb2);
    assert_int_equal(transport_unknown_drops(r.t), drops + 1 + 6);

    /* a whole frame as one message (before frames went in pieces) is not
     * a piece */
    assert_int_equal(zmq_send(r.raw, small, small_len, 0), (int)small_len);
    pump(&r, 5);
    assert_int_equal(r.g.n, 4);
    free(big);
    free(small);
    rig_close(&r);
}

/* Two transports: a frame of 3 MiB from node 2 to node 1 arrives whole. */
static void test_large_frame_between_transports(void **state)
{
    (void)state;
    rig r;
    rig_open(&r);
    char err[256];
    transport *t2 = NULL;
    assert_int_equal(transport_open(r.ctx, 2, r.peers, 2, NULL, &t2, err,
                                    sizeof err), 0);
    uint8_t *data = calloc(1, 3u << 20);
    assert_non_null(data);
    data[7] = 0x5c;
    px_entry e = { .slot = 1, .ballot = { 1, 2 }, .kind = PX_ENTRY_NOOP,
                   .len = 3u << 20, .data = data };
    px_msg m = { .type = PX_MSG_ACCEPT, .from = 2, .to = 1,
                 .ballot = { 1, 2 }, .n_entries = 1, .entries = &e };
    uint64_t end = now_ms() + 5000;
    while (transport_send(t2, &m) != 0 && now_ms() < end) {
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL);   /* until the DEALER is connected */
    }
    pump(&r, 1);
    assert_int_equal(r.g.n, 1);
    assert_int_equal(r.g.len0[0], 3u << 20);
    assert_int_equal(r.g.byte0[0], 0x5c);
    free(data);
    transport_close(t2);
    rig_close(&r);
}

/* Invariant 6: a burst of TRANSPORT_CATCHUP_BURST, then the rate; a
 * repeat within TRANSPORT_CATCHUP_REPEAT_MS is refused; all counted. */
static void test_catchup_budget(void **state)
{
    (void)state;
    rig r;
    rig_open(&r);
    uint64_t t = 1000000;
    uint64_t piece = 4u << 20;
    assert_true(transport_catchup_admit(r.t, 2, t, 1, 0));
    transport_catchup_charge(r.t, 2, piece);
    /* the same request again at once: a repeat */
    assert_false(transport_catchup_admit(r.t, 2, t, 1, 0));
    assert_true(transport_catchup_admit(r.t, 2, t, 1, 1));
    transport_catchup_charge(r.t, 2, piece);
    /* the burst is spent */
    assert_false(transport_catchup_admit(r.t, 2, t, 1, 2));
    /* 100 ms bring back 1.6 MiB: served, and 4 MiB owed */
    assert_true(transport_catchup_admit(r.t, 2, t + 100, 1, 3));
    transport_catchup_charge(r.t, 2, piece);
    assert_false(transport_catchup_admit(r.t, 2, t + 200, 1, 4));
    assert_true(transport_catchup_admit(r.t, 2, t + 300, 1, 5));
    transport_catchup_charge(r.t, 2, piece);
    /* the repeat rule expires */
    assert_true(transport_catchup_admit(r.t, 2, t + 2300, 1, 5));
    /* unknown peers and ourselves are never served */
    assert_false(transport_catchup_admit(r.t, 9, t, 1, 0));
    assert_false(transport_catchup_admit(r.t, 1, t, 1, 0));
    transport_peer_stats st;
    for (uint32_t i = 0; i < transport_peer_count(r.t); i++) {
        transport_peer_stats_get(r.t, i, &st);
        if (st.id == 2)
            break;
    }
    assert_int_equal(st.id, 2);
    assert_int_equal(st.catchup_served, 5);
    assert_int_equal(st.catchup_dropped, 3);
    assert_int_equal(st.catchup_bytes, 4 * piece);
    rig_close(&r);
}

/* The configuration changes: a member is added (messages reach it) and
 * one removed (its frames are dropped and counted as a non-member's,
 * nothing is sent to it); a re-added member is reached again. */
static void test_peers_added_and_removed(void **state)
{
    (void)state;
    rig r;
    rig_open(&r);
    uint8_t *small = NULL;
    size_t small_len = accept_frame(10, 0xc3, &small);
    send_frame(&r, small, small_len);
    pump(&r, 1);
    assert_int_equal(r.g.n, 1);

    char err[256];
    net_peer_addr three = { .id = 3, .host = "127.0.0.1", .port = 9 };
    assert_int_equal(transport_peer_count(r.t), 2);
    assert_int_equal(transport_add_peer(r.t, &three, err, sizeof err), 0);
    assert_int_equal(transport_peer_count(r.t), 3);
    assert_int_equal(transport_add_peer(r.t, &three, err, sizeof err), -EEXIST);
    net_peer_addr elsewhere = three;
    elsewhere.port = 10;
    assert_int_equal(transport_add_peer(r.t, &elsewhere, err, sizeof err),
                     -EEXIST);
    assert_non_null(strstr(err, "already at 127.0.0.1:9"));
    net_peer_addr bad = { .id = 0, .host = "127.0.0.1", .port = 9 };
    assert_int_equal(transport_add_peer(r.t, &bad, err, sizeof err), -EINVAL);

    /* node 2 leaves: its next frame is a non-member's */
    uint64_t drops = transport_unknown_drops(r.t);
    assert_int_equal(transport_remove_peer(r.t, 2), 0);
    assert_int_equal(transport_remove_peer(r.t, 2), -ENOENT);
    assert_int_equal(transport_remove_peer(r.t, 1), -ENOENT);   /* self */
    assert_int_equal(transport_peer_count(r.t), 2);
    assert_int_equal(transport_removed_peers(r.t), 1);
    px_msg m = { .type = PX_MSG_HEARTBEAT, .from = 1, .to = 2,
                 .ballot = { 1, 1 } };
    assert_int_equal(transport_send(r.t, &m), -EINVAL);
    send_frame(&r, small, small_len);
    uint64_t end = now_ms() + 5000;
    while (transport_unknown_drops(r.t) == drops && now_ms() < end)
        pump(&r, 2);
    assert_int_equal(r.g.n, 1);
    assert_int_equal(transport_unknown_drops(r.t), drops + 1);

    /* back again: its frames arrive */
    assert_int_equal(transport_add_peer(r.t, &r.peers[1], err, sizeof err), 0);
    send_frame(&r, small, small_len);
    pump(&r, 2);
    assert_int_equal(r.g.n, 2);

    /* at most TRANSPORT_MAX_PEERS */
    for (uint32_t id = 10; transport_peer_count(r.t) < TRANSPORT_MAX_PEERS;
         id++) {
        net_peer_addr a = { .id = id, .host = "127.0.0.1", .port = 9 };
        assert_int_equal(transport_add_peer(r.t, &a, err, sizeof err), 0);
    }
    net_peer_addr more = { .id = 99, .host = "127.0.0.1", .port = 9 };
    assert_int_equal(transport_add_peer(r.t, &more, err, sizeof err), -ENOSPC);
    free(small);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_are_joined_and_misfits_dropped),
        cmocka_unit_test(test_large_frame_between_transports),
        cmocka_unit_test(test_catchup_budget),
        cmocka_unit_test(test_peers_added_and_removed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * loop.c - the node's event loop: one thread that owns the replica, the
 * state and the mount, and the order of work in a turn (node.h).
 *
 * Invariants:
 *   1. Completion callbacks of fs requests never run inside the backend
 *      calls of the mount (node_submit, node_read_barrier): requests are
 *      queued in the client handle and stepped by the loop, so fs
 *      handlers are never re-entered.
 *   2. After a storage failure (a failed write or fdatasync of the chain
 *      or the acceptor store, no descriptor left) the node neither leads
 *      nor votes (px_suspend), sends nothing, and fails writes and reads
 *      on its mount at once with ENOSPC (its disk is full) or EIO;
 *      net/health.c retries with back-off and, once a probe passes,
 *      reopen.c re-verifies the stores from disk, builds a new replica
 *      and passes the start gate (integrity.c invariant 1) again before
 *      it votes.  A replica step that ran out of memory is handled the
 *      same way (px.h: the replica must not be used again).
 *   3. Timers (election, heartbeat, deadlines, back-off) run on
 *      CLOCK_MONOTONIC; the wall clock only stamps entries (their commit
 *      time, the mtime of keys), so a step of the wall clock neither
 *      freezes nor fires them.
 *   4. Requests before bookkeeping: the kernel holds a directory's lock
 *      across the LOOKUP and CREATE of a new name, so every other create
 *      in that directory waits while one of them waits for this thread.
 *      The mount's requests are read and dispatched after each phase of
 *      a turn that can take long (the acceptor's durable writes collected,
 *      messages received, proposals written out), not once per turn; the
 *      answers no lock waits for go out last (fs/reply.c).  What such a
 *      request submits is proposed in the next turn, which starts without
 *      waiting.
 *   5. Busy polling (--busy-poll-us, default NODE_BUSY_POLL_US): waking
 *      a sleeping thread costs tens of microseconds on a virtual machine,
 *      several times what a request takes here.  So before the loop
 *      sleeps it polls without sleeping for up to busy_poll_us: while two
 *      or more of the mount's writes are in flight (an answer or a
 *      request is due any moment), and within busy_poll_us of the
 *      mount's last request (its caller's next one usually follows; the
 *      loop yields the CPU meanwhile, which the caller may need).  Never
 *      otherwise: an idle node sleeps, and a node without a mount never
 *      polls this way.
 */
#include "node_int.h"

#include "../base/check.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "../net/cpus.h"
#include "reads.h"
#include "serve.h"

/* ------------------------------------------------------------- clock */

static uint64_t us_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t ms_of(clockid_t id)
{
    return us_of(id) / 1000;
}

static uint64_t node_now_us(void)
{
    return us_of(CLOCK_MONOTONIC);
}

uint64_t node_now_ms(void)
{
    return ms_of(CLOCK_MONOTONIC);
}

/* The commit time a leader stamps into entries: wall-clock, never
 * decreasing on this node (a key's mtime does not go back when the clock
 * is stepped back; it stands still until the clock catches up). */
uint64_t node_wall_ms(node *n)
{
    uint64_t ms = ms_of(CLOCK_REALTIME);
    if (ms < n->last_wall_ms)
        ms = n->last_wall_ms;
    n->last_wall_ms = ms;
    return ms;
}

/* ----------------------------------------------------------- failure */

/* Invariant 2: logged once (net/health.c); the replica stops leading and
 * voting from its next step on; callers get ENOSPC or EIO now. */
void node_storage_failed(node *n, const char *what, int rc)
{
    if (n->fatal)
        return;
    n->fatal = rc < 0 ? rc : -EIO;
    health_fail(&n->health, what, n->fatal, node_now_ms());
    if (n->host)   /* it applies nothing more; the replica is suspended */
        host_mark_failed(n->host, n->fatal);
    if (n->cl)   /* writes made at release wait for the reopen */
        client_fail_callers(n->cl, health_client_errno(n->fatal));
}

/* ------------------------------------------------------------- step */

void node_serve_reads(node *n)
{
    if (n->cl)
        client_serve(n->cl, kv_applied_index(n->state), integrity_serves(n));
}

/* ------------------------------------------- the host's edges (host.h) */

/* A message of the replica that may leave now (the host held it until
 * what it vouches for was durable): to the peer, unless this node may not
 * vote yet (integrity.c). */
void node_send(node *n, const px_msg *m)
{
    if (n->net && !integrity_filter(n, m))
        transport_send(n->net, m);   /* a drop is counted by the transport */
}

static void edge_send(void *arg, const px_msg *m)
{
    node_send(arg, m);
}

/* The runtime's share of an output, after the host persisted, sent and
 * applied: the end of a recovery, refused requests and read points (the
 * client handle), the next tick. */
static void edge_output(void *arg, const px_output *out)
{
    node *n = arg;
    snapnode_output(n, out);   /* a snapshot to fetch */
    if (out->recovered)
        integrity_recovery_done(n);
    uint64_t id = client_id(n->cl);
    for (uint32_t i = 0; i < out->n_failed; i++)
        if (out->failed[i].client_id == id)
            client_refused(n->cl, out->failed[i].seq, out->failed[i].status);
        else if (n->serve)   /* a client-only mount's write */
            serve_result(n->serve, out->failed[i].client_id,
                         out->failed[i].seq, out->failed[i].status);
    for (uint32_t i = 0; i < out->n_reads; i++)
        client_read_point(n->cl, out->reads[i].read_token,
                          out->reads[i].status, out->reads[i].index,
                          node_now_ms());
    if (out->n_reads || out->n_committed)
        node_serve_reads(n);
    if (out->next_tick_ms)
        n->next_tick_ms = out->next_tick_ms;
}

/* The key-value state's answer for one request: our own client's. */
static void edge_result(void *arg, uint64_t who, uint64_t seq,
                        int32_t result, uint64_t slot)
{
    (void)slot;
    node *n = arg;
    if (n->cl && who == client_id(n->cl))
        client_applied(n->cl, seq, result);
    else if (n->serve)
        serve_result(n->serve, who, seq, result);
}

/* The stream of changed keys (installed once the replay at open is
 * done): tell the mount which keys an applied entry changed and what they
 * hold now (its own writes too: an inode follows its file through
 * renames, whoever made them), right after the op that changed them and
 * so before its request's result (fs.h rule B2). */
static void edge_changed(void *arg, const char *key, size_t key_len,
                         bool removed)
{
    node *n = arg;
    if (!n->mount && !n->serve)
        return;
    fs_meta now = { 0 };
    const kv_value *v = removed ? NULL : kv_get(n->state, key, key_len);
    if (v)
        reads_meta(v, &now);
    if (n->mount)
        fs_key_changed(n->mount, key, key_len, &now);
    if (n->serve)   /* the entry being applied is the one after */
        serve_changed(n->serve, key, key_len, &now,
                      kv_applied_index(n->state) + 1);
}

/* An entry went into the chain and the state: its digest and a
 * checkpoint's comparison (snapshot.c), the count toward the next
 * snapshot.  Not for a block a failed disk lost and that came again
 * after a reopen: the state is further on. */
static void edge_applied(void *arg, const px_entry *e,
                         const uint8_t hash[CHAIN_HASH_BYTES])
{
    node *n = arg;
    (void)hash;
    members_applied(n, e);   /* a CONFIG: the peers follow */
    if (kv_applied_index(n->state) == e->slot)
        snapnode_applied(n, e);
    fs_chain_grew(n->mount);       /* readers of .chain/stream */
}

static void edge_failed(void *arg, const char *what, int rc)
{
    node_storage_failed(arg, what, rc);
}

/* Catch-up from the chain starts after the commit index the transport
 * last heard from the peer. */
static uint64_t edge_catchup_from(void *arg, uint32_t peer_id)
{
    node *n = arg;
    for (uint32_t i = 0; n->net && i < transport_peer_count(n->net); i++) {
        transport_peer_stats st;
        transport_peer_stats_get(n->net, i, &st);
        if (st.id == peer_id)
            return st.last_commit + 1;
    }
    return 0;
}

/* A follower whose mount had requests within NODE_MOUNT_IDLE_MS keeps its
 * fdatasync on the sync thread (commit.c sync_inline). */
static bool edge_serving(void *arg)
{
    node *n = arg;
    return n->mount && node_now_ms() - n->last_fuse_ms < NODE_MOUNT_IDLE_MS;
}

static uint64_t edge_now(void *arg)
{
    (void)arg;
    return node_now_ms();
}

static uint64_t edge_wall(void *arg)
{
    return node_wall_ms(arg);
}

void node_host_edges(node *n, host_edges *e)
{
    *e = (host_edges){
        .arg = n,
        .now_ms = edge_now,
        .wall_ms = edge_wall,
        .send = edge_send,
        .output = edge_output,
        .result = edge_result,
        .changed = edge_changed,
        .failed = edge_failed,
        .catchup_from = edge_catchup_from,
        .serving = edge_serving,
        .applied = edge_applied,
        .damaged = repair_block_damaged,
    };
}

void node_step(node *n, px_event *ev)
{
    host_step(n->host, ev);
}

/* client_flush's outlets: a batch of requests, one read point. */
static void propose_batch(void *arg, px_request *reqs, uint32_t k)
{
    node *n = arg;
    if (n->fatal)
        return;
    px_event ev = { .type = PX_EV_PROPOSE };
    ev.u.propose.requests = reqs;
    ev.u.propose.n_requests = k;
    node_step(n, &ev);
}

static void read_point(void *arg, const uint64_t *tokens, uint32_t n)
{
    px_event ev = { .type = PX_EV_READ_BATCH };
    ev.u.reads.tokens = tokens;
    ev.u.reads.n = n;
    node_step(arg, &ev);
}

/* Whether a leader was alive within no_leader_ms: a node cut off from
 * the majority refuses new requests at once (EHOSTUNREACH) instead of
 * letting each wait out its own deadline in turn (node.h). */
void node_track_leader(node *n, uint64_t now_ms)
{
    uint64_t contact = px_leader_contact_ms(n->px);
    if (contact > n->leader_seen_ms)
        n->leader_seen_ms = contact;
    bool none = now_ms - n->leader_seen_ms > n->no_leader_ms;
    if (none != n->no_leader)
        fprintf(stderr, "paxosfs: node %u: %s\n", n->cfg.id,
                none ? "no leader reachable; new requests fail with "
                       "EHOSTUNREACH until one is back"
                     : "a leader is reachable again");
    n->no_leader = none;
    /* every election this node wins or loses leadership in is logged */
    int role = px_role(n->px);
    if ((role == PX_LEADER) != (n->logged_role == PX_LEADER)) {
        px_status st;
        px_get_status(n->px, &st);
        fprintf(stderr, "paxosfs: node %u: %s, ballot %" PRIu64 ".%u, commit "
                "index %" PRIu64 "\n", n->cfg.id,
                role == PX_LEADER ? "leading" : "no longer leading",
                st.ballot.round, st.ballot.node_id, st.commit_index);
    }
    n->logged_role = role;
}

/* ------------------------------------------------- the mount's backend */

/* A write from the mount, queued in the client handle.  A write whose
 * caller already returned is accepted even without a leader and retried
 * until it commits. */
static int node_submit(void *ctx, const uint8_t *op, uint32_t len,
                       bool answered, fs_done_fn done, void *arg)
{
    node *n = ctx;
    node_track_leader(n, node_now_ms());   /* as of now, not of the turn */
    if (n->fatal && !answered)   /* a write made at release waits */
        return health_client_errno(n->fatal);   /* invariant 2 */
    if (members_removed(n) && !answered)
        return -EROFS;   /* not a member any more (members.c) */
    if (n->no_leader && !answered) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    return client_submit(n->cl, node_now_ms(), op, len, answered, done, arg);
}

/* A read that needs a read point fails at once on a node cut off from
 * the majority; one from the applied state (FS_READ_APPLIED) does not. */
static int read_gate(node *n, unsigned flags)
{
    if (flags & FS_READ_APPLIED)
        return 0;
    node_track_leader(n, node_now_ms());
    if (n->fatal)   /* invariant 2: nothing is applied meanwhile */
        return health_client_errno(n->fatal);
    if (members_removed(n))
        return -EROFS;   /* no read point outside the configuration */
    if (n->no_leader) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    return 0;
}

static int node_read_barrier(void *ctx, fs_done_fn done, void *arg)
{
    node *n = ctx;
    int rc = read_gate(n, 0);
    return rc < 0 ? rc : client_read(n->cl, node_now_ms(), done, arg);
}

/* Reads of state (node/reads.c): served from this node's key-value state
 * once the client handle lets them.  A key read on a member holding a
 * follower lease (consensus/reads.c invariants 8 and 9) knows its read
 * point at once: it waits only for the accepted entries touching the
 * key, and is served between requests when the state has them. */
static int node_read_key(void *ctx, const char *key, size_t key_len,
                         unsigned flags, fs_read_fn done, void *arg)
{
    node *n = ctx;
    int rc = read_gate(n, flags);
    if (rc < 0)
        return rc;
    uint64_t now = node_now_ms(), at = 0;
    reads_dep k = { key, key_len };
    if (!(flags & FS_READ_APPLIED) && px_role(n->px) != PX_LEADER &&
        px_read_now_for(n->px, now, reads_key_depends, &k, &at) && at) {
        px_read_local(n->px, now);
        n->lease_reads++;
        n->lease_read_queued = true;
    } else {
        at = 0;
    }
    return reads_key(n->cl, &n->state, now, key, key_len, flags, at, done,
                     arg);
}

static int node_list(void *ctx, const char *after, size_t after_len,
                     uint32_t max, unsigned flags, fs_list_fn done, void *arg)
{
    node *n = ctx;
    int rc = read_gate(n, flags);
    return rc < 0 ? rc : reads_list(n->cl, &n->state, node_now_ms(), after,
                                    after_len, max, flags, done, arg);
}

static int node_usage(void *ctx, fs_usage_fn done, void *arg)
{
    node *n = ctx;
    return reads_usage(n->cl, &n->state, done, arg);
}

/* Whether a write may be accepted now: what can be known before the value
 * is written is reported at open(), where a shell sees it. */
static int node_can_write(void *ctx)
{
    node *n = ctx;
    node_track_leader(n, node_now_ms());
    if (n->fatal)
        return health_client_errno(n->fatal);   /* invariant 2 */
    if (members_removed(n))
        return -EROFS;   /* not a member any more (members.c) */
    if (n->no_leader) {
        n->fast_failed++;
        return -EHOSTUNREACH;
    }
    return 0;
}

/* Between two requests of the mount: what needs no batching is answered
 * or asked now instead of at the end of the turn (fs.h `between`): reads
 * from the applied state (a CREATE's name check) always; read points
 * while the replica would release them without a round (px_read_now:
 * this node leads under a valid read lease), at the index it names,
 * exactly as the READ_INDEX event would; on a follower, read points when
 * no read round to the leader is out (px_read_round_out), so the round
 * leaves at once; while one is out, later reads wait for the next round
 * anyway and gather until the turn's end.  Writes wait for the turn's
 * client_flush, where they are proposed in batches, and so do a leader's
 * read points that need a round (they share it). */
static void read_now(void *arg, const uint64_t *tokens, uint32_t k)
{
    node *n = arg;
    for (uint32_t i = 0; i < k; i++)
        client_read_point(n->cl, tokens[i], 0, n->read_now_index,
                          n->read_now_ms);
}

static void node_between(void *ctx)
{
    node *n = ctx;
    if (n->fatal || !n->px)
        return;
    n->read_now_ms = node_now_ms();
    client_read_fn fn = NULL;
    if (px_read_now(n->px, n->read_now_ms, &n->read_now_index)) {
        fn = read_now;
        if (px_role(n->px) != PX_LEADER)   /* a follower lease served it */
            px_read_local(n->px, n->read_now_ms);
    } else if (px_role(n->px) != PX_LEADER && !px_read_round_out(n->px))
        fn = read_point;   /* a follower's round leaves now */
    if (!client_flush_reads(n->cl, fn, n) && !n->lease_read_queued)
        return;
    n->lease_read_queued = false;
    n->between_served++;
    node_serve_reads(n);
    /* what those reads asked of the applied state in turn (a negative
     * LOOKUP's directory key, names.c) is answered now as well, not after
     * the mount's next request or at the turn's end: the kernel holds the
     * directory's lock meanwhile; each pass runs only what the one before
     * queued, a chain of them ends at NODE_BETWEEN_PASSES */
    for (int i = 0; i < NODE_BETWEEN_PASSES && client_has_deferred(n->cl);
         i++) {
        client_flush_reads(n->cl, NULL, n);
        n->between_chained++;
    }
}

void node_backend(node *n, fs_backend *be)
{
    *be = (fs_backend){
        .ctx = n,
        .submit = node_submit,
        .read_barrier = node_read_barrier,
        .read_key = node_read_key,
        .list = node_list,
        .usage = node_usage,
        .can_write = node_can_write,
        .status_text = status_text,
        .block_text = host_block_text,
        .chain_head = host_chain_head,
        .chain_base = snapnode_chain_base,
        .snapshot_text = snapnode_text,
        .between = node_between,
        .incidents_text = repair_incidents_text,
        .members_text = members_text,
    };
}

/* ---------------------------------------------------------------- input */

static void on_message(void *arg, const px_msg *m)
{
    node *n = arg;
    /* a leader's messages arrive: this node is not cut off, even while its
     * replica does not follow that leader yet (a higher promise after a
     * partition, a start not yet confirmed, a diverged chain); requests
     * then wait for their deadline instead of failing at once; a CATCHUP
     * (only a leader sends one) counts too: a node back from a partition
     * may get what it missed that way before the next heartbeat */
    if (m->type == PX_MSG_HEARTBEAT || m->type == PX_MSG_ACCEPT ||
        m->type == PX_MSG_COMMIT || m->type == PX_MSG_CATCHUP)
        n->leader_seen_ms = node_now_ms();
    integrity_check_divergence(n, m->from, m->chain_index, m->chain_hash);
    if (m->type == PX_MSG_CATCHUP) {
        catchup_receive(n, m);
        return;
    }
    px_event ev = { .type = PX_EV_RECEIVE };
    ev.u.msg = m;
    node_step(n, &ev);
}

/* ---------------------------------------------------------------- loop */

enum { POLL_SIGNAL, POLL_SYNC, POLL_BG, POLL_FUSE, POLL_ADMIN, POLL_SERVE,
       POLL_NET, POLL_MAX = 10 };

/* Keep the threads of a leader on cfg.leader_cpus and those of any other
 * role off them.  A leader's loop carries every write; the hand-offs
 * between its threads (loop, ZeroMQ I/O thread, sync thread) are cheap
 * on one CPU and cost an inter-processor wake-up across two.  Checked
 * every turn, moved only when the role changed. */
static void place_threads(node *n)
{
    if (!n->cfg.leader_cpus)
        return;
    int as = px_role(n->px) == PX_LEADER;
    if (as == n->placed_as)
        return;
    n->placed_as = as;
    const cpu_set_t *set = as ? &n->leader_cpus : &n->other_cpus;
    char list[256];
    cpus_format(set, list, sizeof list);
    int rc = cpus_apply(set);
    if (rc < 0) {
        if (rc != n->placement_error)
            fprintf(stderr, "paxosfs: node %u: cannot move threads to CPUs "
                    "%s: %s\n", n->cfg.id, list, strerror(-rc));
        n->placement_error = rc;
        return;
    }
    n->placement_error = 0;
    fprintf(stderr, "paxosfs: node %u: %s: threads on CPUs %s\n", n->cfg.id,
            as ? "leading" : "not leading", list);
}

/* Stopping: writes committed at release (their callers already returned)
 * get up to commit_timeout_ms to commit before the node goes away; the
 * mount is no longer served meanwhile.  A second signal stops at once. */
static bool keep_draining(node *n, uint64_t now, struct pollfd *fds)
{
    fds[POLL_FUSE].fd = -1;
    client_stats cs;
    client_get_stats(n->cl, &cs);
    if (n->fatal && cs.answered_outstanding)
        fprintf(stderr, "paxosfs: node %u: stopping while it cannot persist, "
                "with %" PRIu64 " writes made at close not known to be "
                "committed\n", n->cfg.id, cs.answered_outstanding);
    if (n->fatal || cs.answered_outstanding == 0)
        return false;
    if (n->drain_deadline_ms == 0) {
        n->drain_deadline_ms = now + n->cfg.commit_timeout_ms;
        fprintf(stderr, "paxosfs: node %u: waiting up to %" PRIu64 " ms for %"
                PRIu64 " writes made at close to commit\n", n->cfg.id,
                n->cfg.commit_timeout_ms, cs.answered_outstanding);
    }
    if (now < n->drain_deadline_ms)
        return true;
    fprintf(stderr, "paxosfs: node %u: stopping with %" PRIu64 " writes made "
            "at close not known to be committed\n", n->cfg.id,
            cs.answered_outstanding);
    return false;
}

/* The mount's session ended (1: unmounted) or failed. */
static void fuse_ended(node *n, int rc)
{
    if (rc < 0)
        fprintf(stderr, "paxosfs: FUSE: %s\n", strerror(-rc));
    else
        fprintf(stderr, "paxosfs: node %u: unmounted, stopping\n", n->cfg.id);
    n->stop = true;
}

/* The mount just had requests (edge_serving, invariant 5). */
static void fuse_active(node *n)
{
    n->last_fuse_us = node_now_us();
    n->last_fuse_ms = n->last_fuse_us / 1000;
}

/* Invariant 4: read and dispatch the requests the kernel holds now. */
static void serve_requests(node *n, const struct pollfd *fds)
{
    if (!n->mount || fds[POLL_FUSE].fd < 0)
        return;
    uint64_t before = fs_dispatched(n->mount);
    int rc = fs_process(n->mount);
    if (rc != 0)
        fuse_ended(n, rc);
    if (fs_dispatched(n->mount) != before) {
        fuse_active(n);
        n->fuse_late = true;   /* what they submitted: the next turn */
    }
}

/* Invariant 5: poll for up to busy_poll_us before sleeping in poll(). */
static int wait_events(node *n, struct pollfd *fds, int n_fds, int timeout)
{
    /* fs/reply.c invariant 2: no answer waits for an event */
    CHECK(timeout == 0 || n->stop || !fs_has_answers(n->mount));
    uint64_t spin = n->cfg.busy_poll_us;
    if (timeout > 0 && spin && n->mount) {
        client_stats cs;
        client_get_stats(n->cl, &cs);
        uint64_t now = node_now_us(), from = 0;
        bool yield = false;
        if (cs.pending + cs.waiting >= 2) {
            from = now;
        } else if (now - n->last_fuse_us < spin) {
            from = n->last_fuse_us;
            yield = true;
        }
        if (from) {
            n->busy_polls++;
            for (;;) {
                int pr = poll(fds, (nfds_t)n_fds, 0);
                if (pr != 0) {
                    n->busy_poll_found += pr > 0;
                    return pr;
                }
                if (node_now_us() - from >= spin)
                    break;
                if (yield)
                    sched_yield();
            }
        }
    }
    return poll(fds, (nfds_t)n_fds, timeout);
}

int node_run(node *n)
{
    int rc = host_start(n->host);   /* the sync and worker threads */
    if (rc < 0)
        return rc;
    node_write_lock_pid(n);
    if (n->recovering_why[0])     /* said before the log was redirected */
        fprintf(stderr, "paxosfs: node %u: recovering lost acceptor state "
                "(%s); casting no vote until recovered\n", n->cfg.id,
                n->recovering_why);
    /* let the replica start (a sole voter elects itself at once) */
    px_event first = { .type = PX_EV_TICK };
    node_step(n, &first);
    host_flush(n->host);
    place_threads(n);

    /* ZeroMQ sockets are polled through their ZMQ_FD, which signals only
     * changes: the loop blocks on them only after draining each socket
     * (the drain functions say when they stopped at a bound instead), and
     * drains them all on every timeout as well.  A plain poll() costs one
     * system call; zmq_poll() checked every socket's events around it,
     * a dozen more per turn. */
    bool zmq_pending = true;   /* drain once before the first sleep */
    /* the descriptors stay the same for the loop's life; poll() rewrites
     * only revents */
    struct pollfd fds[POLL_MAX];
    for (int i = 0; i < POLL_MAX; i++)
        fds[i] = (struct pollfd){ .fd = -1, .events = POLLIN };
    fds[POLL_SIGNAL].fd = n->signal_fd;
    fds[POLL_SYNC].fd = host_sync_fd(n->host);
    fds[POLL_BG].fd = host_chain_fd(n->host);
    fds[POLL_FUSE].fd = n->mount ? fs_fd(n->mount) : -1;
    fds[POLL_ADMIN].fd = admin_fd(n->adm);
    fds[POLL_SERVE].fd = n->serve ? serve_fd(n->serve) : -1;
    int n_fds = POLL_NET;
    if (n->net) {
        int net_fds[POLL_MAX - POLL_NET];
        int k = transport_poll_fds(n->net, net_fds, POLL_MAX - POLL_NET);
        for (int i = 0; i < k; i++)
            fds[n_fds++].fd = net_fds[i];
    }
    for (;;) {
        uint64_t now = node_now_ms();
        if (n->stop && !keep_draining(n, now, fds))
            break;
        int timeout = 100;
        if (n->next_tick_ms && n->next_tick_ms > now && n->next_tick_ms - now < 100)
            timeout = (int)(n->next_tick_ms - now);
        else if (n->next_tick_ms && n->next_tick_ms <= now)
            timeout = 0;
        if (zmq_pending || client_has_deferred(n->cl))
            timeout = 0;   /* deferred reads run at the next client_flush */
        if (n->fuse_late)
            timeout = 0;   /* invariant 4 */
        n->fuse_late = false;
        if (n->mount) {
            /* fs/reply.c invariant 2: nothing waits with answers queued;
             * stopping, no more requests are read */
            uint32_t dispatched = 0;
            rc = fs_send_answers(n->mount, fds[POLL_FUSE].fd >= 0,
                                 &dispatched);
            if (rc != 0)
                fuse_ended(n, rc);
            if (dispatched) {
                fuse_active(n);
                timeout = 0;   /* invariant 4 */
            }
        }
        int pr = wait_events(n, fds, n_fds, timeout);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "paxosfs: poll: %s\n", strerror(errno));
            break;
        }
        bool drain_all = pr == 0 || zmq_pending;
        zmq_pending = false;
        if (pr > 0 && (fds[POLL_SIGNAL].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(n->signal_fd, &si, sizeof si) > 0) {
                fprintf(stderr, "paxosfs: node %u: signal %u, stopping\n",
                        n->cfg.id, si.ssi_signo);
                if (n->stop)
                    n->drain_deadline_ms = 1;   /* a second one: now */
                n->stop = true;
            }
        }
        if (pr > 0 && (fds[POLL_BG].revents & POLLIN))
            host_collect_chain(n->host);
        if (pr > 0 && (fds[POLL_SYNC].revents & POLLIN))
            host_collect(n->host);
        serve_requests(n, fds);
        if (drain_all || fds[POLL_ADMIN].revents)
            zmq_pending |= admin_serve(n->adm, status_admin, n);
        if (n->serve && (drain_all || fds[POLL_SERVE].revents))
            zmq_pending |= serve_receive(n->serve, node_now_ms());
        unsigned which = 0;   /* fds[POLL_NET + i]: bit i (transport.h) */
        for (int i = POLL_NET; i < n_fds; i++)
            if (drain_all || fds[i].revents)
                which |= 1u << (i - POLL_NET);
        if (n->net && which)
            zmq_pending |= transport_receive(n->net, which, node_now_ms(),
                                             on_message, integrity_on_chain_head, n);
        if (n->mount && pr > 0 && fds[POLL_FUSE].fd >= 0 &&
            (fds[POLL_FUSE].revents & (POLLIN | POLLERR | POLLHUP))) {
            rc = fs_process(n->mount);
            fuse_active(n);
            if (rc != 0)
                fuse_ended(n, rc);
        }
        node_track_leader(n, node_now_ms());
        client_flush(n->cl, propose_batch, read_point, n);
        if (n->lease_read_queued) {   /* e.g. a client-only mount's read */
            n->lease_read_queued = false;
            node_serve_reads(n);
        }
        if (n->serve)
            serve_turn(n->serve, node_now_ms());
        place_threads(n);
        now = node_now_ms();
        if (n->next_tick_ms && now >= n->next_tick_ms) {
            px_event ev = { .type = PX_EV_TICK };
            node_step(n, &ev);
        }
        host_flush(n->host);
        serve_requests(n, fds);
        now = node_now_ms();
        client_expire(n->cl, now);
        host_background(n->host, now);
        integrity_send_heads(n, now);
        catchup_expire(n, now);
        snapnode_turn(n, now);
        members_turn(n, now);
        if (n->fatal && health_poll(&n->health, now))
            node_storage_reopen(n);   /* invariant 2: the probe passed */
    }
    /* what was acknowledged is durable already; finish what is in flight */
    host_drain(n->host);
    return n->fatal;
}


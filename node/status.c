/*
 * status.c - what a node tells about itself: the .status file of the
 * mount (one JSON object) and the admin socket's requests.
 */
#include "node_int.h"
#include "../net/json.h"
#include "serve.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../net/cpus.h"

static void hex(const uint8_t *b, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
}

static const char *role_name(uint8_t role)
{
    switch (role) {
    case PX_LEADER: return "leader";
    case PX_CANDIDATE: return "candidate";
    case PX_LEARNER: return "learner";
    default: return "follower";
    }
}

/* .status: the start gate, lost acceptor state, reads, catch-up checks
 * (invariants 5-8). */
static void status_storage(const node *n, const px_status *st, FILE *fp)
{
    fprintf(fp, ",\"confirmed\":%s,\"start\":%" PRIu64 ",\"start_head\":%"
            PRIu64 ",\"start_reports_dropped\":%" PRIu64 ",\"recovering\":",
            n->confirmed ? "true" : "false", n->start.counter, n->start_head,
            n->start_reports_dropped);
    if (st->recovering || n->recovering_why[0]) {
        fprintf(fp, "{\"why\":");
        json_string(fp, n->recovering_why);
        fprintf(fp, ",\"ballot\":{\"round\":%" PRIu64 ",\"node\":%u},"
                "\"promised\":%u,\"needed\":%u,\"until_index\":%" PRIu64 "}",
                st->recovery_ballot.round, st->recovery_ballot.node_id,
                st->recovery_promised, st->recovery_needed,
                st->recovery_slot);
    } else {
        fprintf(fp, "false");
    }
    fprintf(fp, ",\"reads\":\"%s\",\"catchup_installed\":%" PRIu64
            ",\"catchup_dropped\":%" PRIu64,
            n->fatal == -ENOSPC
                ? "failing with ENOSPC: this node cannot persist"
            : n->fatal ? "failing with EIO: this node cannot persist"
            : n->abstaining ? "waiting: chain differs from a majority's"
            : !n->confirmed ? "waiting: chain not yet confirmed by a majority"
                            : "served",
            n->catchup_installed, n->catchup_dropped);
}

int status_text(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    px_status st;
    px_get_status(n->px, &st);
    char head[2 * CHAIN_HASH_BYTES + 1];
    hex(chain_head_hash(n->chain), CHAIN_HASH_BYTES, head);
    char members[PX_MAX_MEMBERS * 12 + 4] = "";
    size_t m = 0;
    for (uint32_t i = 0; i < st.members.n_voters; i++)
        m += (size_t)snprintf(members + m, sizeof members - m, "%s%u",
                              i ? "," : "", st.members.voters[i]);
    client_stats cs = {0};
    if (n->cl)
        client_get_stats(n->cl, &cs);
    host_stats hs;
    host_get_stats(n->host, &hs);
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    if (!fp)
        return -ENOMEM;
    fprintf(fp,
            "{\"id\":%u,\"role\":\"%s\",\"leader\":%u,"
            "\"ballot\":{\"round\":%" PRIu64 ",\"node\":%u},"
            "\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64 ","
            "\"chain_head\":{\"index\":%" PRIu64 ",\"hash\":\"%s\"},"
            "\"chain_synced_index\":%" PRIu64 ","
            "\"members\":[%s],\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64 ","
            "\"pending_writes\":%" PRIu64 ",\"waiting_writes\":%" PRIu64
            ",\"waited_writes\":%" PRIu64 ",\"release_writes\":%" PRIu64
            ",\"waiting_reads\":%" PRIu64
            ",\"leader_reachable\":%s,\"fast_failed\":%" PRIu64
            ",\"reads_between_requests\":%" PRIu64
            ",\"chained_reads_between\":%" PRIu64
            ",\"lease_reads\":%" PRIu64
            ",\"parallel_lookups\":%s"
            ",\"retained_bytes\":%" PRIu64 ",\"acceptor_syncs\":%" PRIu64
            ",\"healthy\":%s",
            n->cfg.id, role_name(st.role), st.leader_id, st.ballot.round,
            st.ballot.node_id, st.commit_index, kv_applied_index(n->state),
            chain_head_index(n->chain), head, chain_synced_index(n->chain),
            members, kv_count(n->state), kv_bytes(n->state),
            cs.pending, cs.waiting, cs.waited_total,
            cs.answered_outstanding, cs.reads,
            n->no_leader ? "false" : "true",
            n->fast_failed, n->between_served, n->between_chained,
            n->lease_reads,
            fs_parallel_dirops(n->mount) ? "true" : "false",
            px_retained_bytes(n->px),
            hs.acceptor_syncs,
            n->fatal ? "false" : "true");
    fputc(',', fp);
    health_status_json(&n->health, fp, node_now_ms());
    fprintf(fp, ",\"busy_poll\":{\"us\":%u,\"polls\":%" PRIu64
            ",\"found\":%" PRIu64 "},\"answers_queued\":%" PRIu64
            ",\"answers_failed\":%" PRIu64,
            n->cfg.busy_poll_us, n->busy_polls, n->busy_poll_found,
            fs_answers_queued(n->mount), fs_answers_failed(n->mount));
    fprintf(fp, ",\"read_lease\":%s,\"read_lease_ms_left\":%" PRIu64,
            st.read_lease ? "true" : "false", st.lease_ms_left);
    fprintf(fp, ",\"follower_lease\":%s,\"follower_lease_ms_left\":%" PRIu64
            ",\"follower_leases_granted\":%" PRIu32,
            st.follower_lease ? "true" : "false", st.follower_lease_ms_left,
            st.leases_granted);
    px_stats pst;
    px_get_stats(n->px, &pst);
    fprintf(fp, ",\"leader_votes_sent\":%" PRIu64 ",\"vote_commits\":%"
            PRIu64, pst.votes_sent, pst.vote_commits);
    fprintf(fp, ",\"elections_started\":%" PRIu64 ",\"leader_changes\":%"
            PRIu64 ",\"stalls\":%" PRIu64 ",\"stalled_ms\":%" PRIu64,
            pst.elections_started, pst.leader_changes, pst.stalls,
            pst.stalled_ms);
    fprintf(fp, ",\"voting\":%s,\"votes_withheld\":%" PRIu64 ",\"diverged_from\":[",
            n->abstaining || !n->confirmed || st.recovering || n->fatal
                ? "false" : "true",
            n->votes_withheld);
    const char *dsep = "";
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        if (!n->peer_chain_differs[i])
            continue;
        fprintf(fp, "%s{\"peer\":%u,\"index\":%" PRIu64 "}", dsep,
                n->cfg.peers[i].id, n->peer_chain_index[i]);
        dsep = ",";
    }
    fprintf(fp, "]");
    status_storage(n, &st, fp);
    if (n->serve)
        serve_status_json(n->serve, fp);
    members_status_json(n, fp);
    fprintf(fp, ",\"peers\":[");
    uint64_t now = node_now_ms();
    const char *sep = "";
    for (uint32_t i = 0; n->net && i < transport_peer_count(n->net); i++) {
        transport_peer_stats ps;
        transport_peer_stats_get(n->net, i, &ps);
        if (ps.id == n->cfg.id)
            continue;
        uint64_t match = 0, contact = ps.last_recv_ms;
        for (uint32_t j = 0; j < st.n_peers; j++) {
            if (st.peers[j].id != ps.id)
                continue;
            match = st.peers[j].match_index;
            if (st.peers[j].last_contact_ms > contact)
                contact = st.peers[j].last_contact_ms;
        }
        bool connected = contact && now - contact < NODE_PEER_ALIVE_MS;
        fprintf(fp, "%s{\"id\":%u,\"connected\":%s,\"last_contact_ms_ago\":%"
                PRId64 ",\"match_index\":%" PRIu64 ",\"blocked\":%s,"
                "\"sent\":%" PRIu64 ",\"received\":%" PRIu64
                ",\"dropped_in\":%" PRIu64 ",\"dropped_out\":%" PRIu64 "}",
                sep, ps.id, connected ? "true" : "false",
                contact ? (int64_t)(now - contact) : (int64_t)-1, match,
                ps.blocked ? "true" : "false", ps.sent, ps.received,
                ps.recv_dropped, ps.send_dropped);
        sep = ",";
    }
    char cpus[256] = "";
    if (n->cfg.leader_cpus)
        cpus_format(&n->leader_cpus, cpus, sizeof cpus);
    fprintf(fp, "],\"leader_cpus\":\"%s\"", cpus);
    cpu_set_t now_on;
    cpus[0] = '\0';
    if (cpus_allowed(&now_on) == 0)
        cpus_format(&now_on, cpus, sizeof cpus);
    fprintf(fp, ",\"cpus\":\"%s\"", cpus);
    fprintf(fp, ",\"invalid_ops\":%" PRIu64 ",\"ballots_refused\":%" PRIu64
            ",\"rounds_exhausted\":%" PRIu64, kv_invalid_ops(n->state),
            pst.ballots_refused, pst.rounds_exhausted);
    char snapbuf[1200];
    if (snapnode_status(n, snapbuf, sizeof snapbuf) > 0)
        fprintf(fp, ",%s", snapbuf);
    repair_status(n, fp);
    fprintf(fp, ",\"catchup\":[");
    const char *csep = "";
    for (uint32_t i = 0; n->net && i < transport_peer_count(n->net); i++) {
        transport_peer_stats ps;
        transport_peer_stats_get(n->net, i, &ps);
        if (ps.id == n->cfg.id)
            continue;
        fprintf(fp, "%s{\"peer\":%u,\"served\":%" PRIu64 ",\"dropped\":%"
                PRIu64 ",\"bytes\":%" PRIu64 "}", csep, ps.id,
                ps.catchup_served, ps.catchup_dropped, ps.catchup_bytes);
        csep = ",";
    }
    fprintf(fp, "]");
    if (n->net) {
        transport_conn_stats cn;
        transport_conn_stats_get(n->net, &cn);
        fprintf(fp, ",\"connections\":{\"accepted\":%" PRIu64
                ",\"handshakes\":%" PRIu64 ",\"failed_protocol\":%" PRIu64
                ",\"failed_auth\":%" PRIu64 ",\"failed_other\":%" PRIu64
                ",\"dropped\":%" PRIu64 "}", cn.accepted, cn.handshakes,
                cn.failed_protocol, cn.failed_auth, cn.failed_other,
                cn.dropped);
    }
    fprintf(fp, ",\"held_messages\":%u,\"held_dropped\":%" PRIu64
            ",\"held_superseded\":%" PRIu64 ",\"rejected_connections\":%" PRIu64
            ",\"unknown_dropped\":%" PRIu64 "}\n", hs.held,
            hs.held_dropped, hs.held_superseded,
            n->net ? transport_rejected_connections(n->net) : 0,
            n->net ? transport_unknown_drops(n->net) : 0);
    if (fclose(fp) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *text = buf;
    *len = size;
    return 0;
}

void status_admin(void *arg, const char *request, char **reply)
{
    node *n = arg;
    char verb[16], what[16];
    unsigned peer = 0;
    if (members_admin(n, request, reply))
        return;
    if (strcmp(request, "status") == 0) {
        size_t len;
        if (status_text(n, reply, &len) < 0)
            *reply = strdup("error: out of memory");
        return;
    }
    if (sscanf(request, "%15s %15s %u", verb, what, &peer) == 3 &&
        strcmp(verb, "link") == 0 &&
        (strcmp(what, "drop") == 0 || strcmp(what, "heal") == 0)) {
        bool drop = strcmp(what, "drop") == 0;
        int rc = n->net ? transport_block(n->net, peer, drop) : -ENOENT;
        if (rc == 0)
            fprintf(stderr, "paxosfs: node %u: link to node %u %s\n", n->cfg.id,
                    peer, drop ? "dropped" : "healed");
        *reply = strdup(rc == 0 ? "ok" : "error: no such peer");
        return;
    }
    unsigned long long want = 0;
    if (strcmp(request, "snapshot") == 0) {
        /* start one now (or report the one running): the reply names its
         * index; "snapshot-wait INDEX" says when it is done */
        uint64_t index = 0;
        int rc = snapnode_take_now(n, &index);
        char msg[96];
        if (rc == 0)
            snprintf(msg, sizeof msg, "started %" PRIu64, index);
        else
            snprintf(msg, sizeof msg, "error: cannot take a snapshot now: %s",
                     strerror(-rc));
        *reply = strdup(msg);
        return;
    }
    if (sscanf(request, "snapshot-wait %llu", &want) == 1) {
        char msg[200];
        const snap_info *last = host_snapshot(n->host);
        if (last && last->index >= want)
            snprintf(msg, sizeof msg, "done index %" PRIu64 " keys %" PRIu64
                     " bytes %" PRIu64 " raw %" PRIu64, last->index,
                     last->keys, last->file_bytes, last->raw_bytes);
        else if (n->take)
            snprintf(msg, sizeof msg, "running %" PRIu64, n->take_index);
        else
            snprintf(msg, sizeof msg, "error: no snapshot at %llu (it "
                     "failed: see the log)", want);
        *reply = strdup(msg);
        return;
    }
    *reply = strdup("error: unknown request (want: status | link drop J | "
                    "link heal J | snapshot | snapshot-wait INDEX | member list | "
                    "member add ID=HOST:PORT | member remove ID | "
                    "member promote ID)");
}

/* The mount's .chain directory (fs_backend.block_text, .chain_head). */
int host_block_text(void *ctx, uint64_t index, char **text, uint32_t *len)
{
    return host_render_block(((node *)ctx)->host, index, text, len);
}

uint64_t host_chain_head(void *ctx)
{
    return chain_head_index(((node *)ctx)->chain);
}

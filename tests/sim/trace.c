/*
 * trace.c - owns the per-replica trace rings of the simulator.
 *
 * Every replica (and slot 0 for the world: faults, healing) keeps its last
 * SIM_TRACE_RING records: messages in and out, persists, commits, faults,
 * proposals, reads, snapshots.  Records are small structs formatted only
 * when printed, so tracing costs little on the 999 seeds that pass.
 *
 * Invariants:
 *   1. A record never points at memory it does not own except `note`,
 *      which is always a string literal.
 *   2. With --trace every record is also printed as it happens, in the
 *      order the run makes them; a replay prints the same lines.
 */
#include "sim.h"

#include <string.h>

static const char *sim_msg_name(uint8_t type)
{
    static const char *const names[PX_MSG_TYPE_COUNT] = {
        [PX_MSG_PREPARE] = "PREPARE", [PX_MSG_PROMISE] = "PROMISE",
        [PX_MSG_ACCEPT] = "ACCEPT", [PX_MSG_ACCEPTED] = "ACCEPTED",
        [PX_MSG_REJECT] = "REJECT", [PX_MSG_HEARTBEAT] = "HEARTBEAT",
        [PX_MSG_HEARTBEAT_ACK] = "HB_ACK", [PX_MSG_FORWARD] = "FORWARD",
        [PX_MSG_CATCHUP_REQ] = "CATCHUP_REQ", [PX_MSG_CATCHUP] = "CATCHUP",
        [PX_MSG_SNAPSHOT_NEEDED] = "SNAP_NEEDED", [PX_MSG_COMMIT] = "COMMIT",
        [PX_MSG_TIMEOUT_NOW] = "TIMEOUT_NOW",
    };
    if (type < PX_MSG_TYPE_COUNT && names[type])
        return names[type];
    return "?";
}

static void sim_trace_print(FILE *f, uint32_t node, const sim_trace_rec *r)
{
    fprintf(f, "  %8llu n%u ", (unsigned long long)r->at_ms, node);
    switch (r->kind) {
    case SIM_TR_MSG_OUT:
    case SIM_TR_MSG_IN:
    case SIM_TR_DROP:
        fprintf(f, "%s %-11s %s n%u b=(%llu,%u) slot=%llu commit=%llu "
                "aux=%llu n=%u\n",
                r->kind == SIM_TR_MSG_OUT ? "send" :
                r->kind == SIM_TR_MSG_IN ? "recv" : "DROP",
                sim_msg_name(r->msg_type),
                r->kind == SIM_TR_MSG_IN ? "<-" : "->", r->peer,
                (unsigned long long)r->ballot.round, r->ballot.node_id,
                (unsigned long long)r->slot, (unsigned long long)r->commit,
                (unsigned long long)r->aux, r->n);
        break;
    case SIM_TR_PERSIST:
        fprintf(f, "persist promise=(%llu,%u) accepts=%u slots %llu..%llu\n",
                (unsigned long long)r->ballot.round, r->ballot.node_id, r->n,
                (unsigned long long)r->slot, (unsigned long long)r->aux);
        break;
    case SIM_TR_COMMIT:
        fprintf(f, "apply slots %llu..%llu (%u)\n",
                (unsigned long long)r->slot, (unsigned long long)r->aux, r->n);
        break;
    default:
        fprintf(f, "%s [%llu] peer=%u\n", r->note ? r->note : "?",
                (unsigned long long)r->slot, r->peer);
        break;
    }
}

void sim_trace_add(sim_world *w, uint32_t node, const sim_trace_rec *rec)
{
    if (!w->trace || node > SIM_MAX_NODES)
        return;
    sim_trace *t = w->trace;
    sim_trace_rec *r = &t->ring[node][t->next[node]];
    *r = *rec;
    r->at_ms = w->now_ms;
    t->next[node] = (t->next[node] + 1) % SIM_TRACE_RING;
    t->count[node]++;
    if (w->cfg.trace_live && w->out)
        sim_trace_print(w->out, node, r);
}

void sim_trace_msg(sim_world *w, uint32_t node, uint8_t kind,
                   const px_msg *m)
{
    if (!w->trace)
        return;
    sim_trace_rec r = {.kind = kind, .msg_type = m->type,
                       .peer = kind == SIM_TR_MSG_IN ? m->from : m->to,
                       .ballot = m->ballot, .slot = m->slot,
                       .commit = m->commit, .aux = m->aux,
                       .n = m->n_entries + m->n_requests};
    sim_trace_add(w, node, &r);
}

void sim_trace_note(sim_world *w, uint32_t node, uint8_t kind,
                    const char *note, uint64_t slot, uint32_t peer)
{
    if (!w->trace)
        return;
    sim_trace_rec r = {.kind = kind, .note = note, .slot = slot,
                       .peer = peer};
    sim_trace_add(w, node, &r);
}

void sim_trace_dump(const sim_world *w, FILE *f)
{
    if (!w->trace)
        return;
    const sim_trace *t = w->trace;
    for (uint32_t node = 0; node <= w->cfg.nodes; node++) {
        uint64_t n = t->count[node] < SIM_TRACE_RING ? t->count[node]
                                                     : SIM_TRACE_RING;
        fprintf(f, "-- %s%u: last %llu of %llu events\n",
                node ? "node " : "world ", node, (unsigned long long)n,
                (unsigned long long)t->count[node]);
        uint32_t start = (t->next[node] + SIM_TRACE_RING - (uint32_t)n) %
                         SIM_TRACE_RING;
        for (uint64_t i = 0; i < n; i++)
            sim_trace_print(f, node,
                            &t->ring[node][(start + i) % SIM_TRACE_RING]);
    }
}

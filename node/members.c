/*
 * members.c - the node's side of changing the configuration online (the
 * consensus core changes it: consensus/members.c, docs/design.md
 * "Membership").
 *
 *   - The configuration in force comes from the chain: a committed CONFIG
 *     entry carries, as its host context, the address of every member
 *     ("ID=HOST:PORT,..." in the syntax of --peers, voters and learners
 *     alike).  When one is applied (or a snapshot carrying one is
 *     installed) the node connects to the new members and drops the
 *     removed ones (transport_add_peer / transport_remove_peer).  At a
 *     restart it is the last CONFIG of the chain, else the snapshot's
 *     (host_config_found); --peers is the seed list for a first start.
 *   - Admin requests "member list|add|remove|promote" (paxosctl member):
 *     the leader proposes the change (PX_EV_CHANGE_MEMBERS) and answers
 *     once its CONFIG is applied; any other member forwards the request to
 *     the leader in a MEMBER frame and relays its answer.  One change at a
 *     time, cluster-wide (the core refuses a second: "busy").
 *   - A learner whose lag (commit index minus its match index, at the
 *     leader) is at most cfg.promote_lag slots is promoted to voter by the
 *     leader, unless cfg.no_promote.
 *   - A node removed from the configuration (it was a member, the
 *     configuration in force no longer names it) refuses writes with
 *     EROFS and says so in its log and .status.
 *
 * Invariants:
 *   1. n->peers (cfg.peers) names this node and every member of the
 *      configuration in force whose address is known, at most
 *      TRANSPORT_MAX_PEERS; the per-peer arrays of integrity.c and
 *      catchup.c follow each peer when the list changes (remap).
 *   2. At most one change asked through this node is outstanding; it is
 *      answered exactly once: committed, refused, or given up at its
 *      deadline (it may still commit then: the answer says so).
 *   3. Until this node has been a member (a node joining), members are
 *      only ever added to its transport, never removed: catching up it
 *      applies older configurations on its way to the one in force.
 *   4. A member that was down while the configuration moved on may know
 *      none of the members in force (its chain names only nodes that left
 *      since), and its transport drops every frame from a sender it does
 *      not know.  So every member announces itself (a MEMBER frame,
 *      WIRE_MEMBER_ANNOUNCE: its address and the block of its
 *      configuration) every MEMBERS_ANNOUNCE_EVERY_MS to each member of
 *      its configuration it has not heard from for MEMBERS_SILENT_MS
 *      (members send chain heads every 250 ms, so only a member that is
 *      down or cut off gets them).  A node connects to an announcing
 *      sender it does not know only for a configuration newer than its
 *      own (a node behind), whether or not it hears a leader meanwhile: it
 *      needs every new member, not only the leader, to vouch for the
 *      blocks it catches up.  A removed node never announces.  The peer
 *      added so stays until the next configuration the node applies
 *      (follow) decides; quorums never depend on it: the core counts its
 *      own configuration's voters.
 */
#include "node_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../net/json.h"

#define MEMBERS_ANSWER_MS 10000     /* a change not committed by then */
#define MEMBERS_FORWARD_MS 15000    /* a forwarded one not answered */
#define MEMBERS_PROMOTE_EVERY_MS 200
#define MEMBERS_PROMOTE_BACKOFF_MS 1000   /* after a refused promotion */
#define MEMBERS_ANNOUNCE_EVERY_MS 1000
#define MEMBERS_SILENT_MS 2000           /* 8 chain-head intervals */

static bool has_id(const px_members *m, uint32_t id, bool voters_only)
{
    for (uint32_t i = 0; i < m->n_voters; i++)
        if (m->voters[i] == id)
            return true;
    if (voters_only)
        return false;
    for (uint32_t i = 0; i < m->n_learners; i++)
        if (m->learners[i] == id)
            return true;
    return false;
}

bool members_removed(const node *n)
{
    return n->mem.removed;
}

/* The address of member `id` as this node knows it (NULL: unknown). */
static const net_peer_addr *addr_of(const node *n, uint32_t id)
{
    for (uint32_t i = 0; i < n->cfg.n_peers; i++)
        if (n->peers[i].id == id)
            return &n->peers[i];
    for (uint32_t i = 0; i < n->mem.n_seed; i++)
        if (n->mem.seed[i].id == id)
            return &n->mem.seed[i];
    return NULL;
}

/* "ID=HOST:PORT,..." for every member of m (extra: one more address that
 * may not be known yet).  Length, or -ENOENT (an address unknown; err
 * names it), -ENOSPC. */
static int format_addrs(const node *n, const px_members *m,
                        const net_peer_addr *extra, char *buf, size_t cap,
                        char *err, size_t err_len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < m->n_voters + m->n_learners; i++) {
        uint32_t id = i < m->n_voters ? m->voters[i]
                                      : m->learners[i - m->n_voters];
        const net_peer_addr *a = extra && extra->id == id ? extra
                                                          : addr_of(n, id);
        if (!a) {
            snprintf(err, err_len, "no address known for member %u", id);
            return -ENOENT;
        }
        int w = snprintf(buf + k, cap - k, "%s%u=%s:%u", k ? "," : "", id,
                         a->host, a->port);
        if (w < 0 || (size_t)w >= cap - k) {
            snprintf(err, err_len, "the members' addresses exceed %zu bytes",
                     cap);
            return -ENOSPC;
        }
        k += (size_t)w;
    }
    return (int)k;
}

int members_snapshot_blob(node *n, const px_members *m, uint8_t *buf,
                          uint32_t cap)
{
    char ctx[PX_CONFIG_MAX_CONTEXT + 1], err[128];
    int len = format_addrs(n, m, NULL, ctx, sizeof ctx, err, sizeof err);
    if (len < 0 || len > (int)PX_CONFIG_MAX_CONTEXT)
        len = 0;   /* addresses come from --peers at a restart then */
    return px_config_encode(m, (const uint8_t *)ctx, (uint32_t)len, buf, cap);
}

/* Encode a MEMBER frame and send it to w->to: 0, or a negative errno. */
static int member_send(node *n, const wire_member *w)
{
    uint8_t frame[WIRE_HEADER_BYTES + 32 + WIRE_MAX_MEMBER_TEXT];
    size_t len = 0;
    int rc = wire_encode_member_into(w, frame, sizeof frame, &len);
    return rc < 0 ? rc : transport_send_frame(n->net, w->to, frame, len);
}

/* --------------------------------------------- the peers follow (inv. 1) */

/* Per-peer state of integrity.c and catchup.c, indexed like n->peers:
 * moved with each peer to its new index, a new peer's zeroed. */
#define REMAP(field)                                                       \
    do {                                                                   \
        for (uint32_t k = 0; k < n_new; k++) {                             \
            if (from[k] >= 0)                                              \
                memcpy(&n->field[k], &old->field[from[k]],                 \
                       sizeof n->field[0]);                                \
            else                                                           \
                memset(&n->field[k], 0, sizeof n->field[0]);               \
        }                                                                  \
        for (uint32_t k = n_new; k < TRANSPORT_MAX_PEERS; k++)             \
            memset(&n->field[k], 0, sizeof n->field[0]);                   \
    } while (0)

static int remap(node *n, const net_peer_addr *list, uint32_t n_new)
{
    node *old = malloc(sizeof *old);
    if (!old)
        return -ENOMEM;
    memcpy(old, n, sizeof *old);
    int from[TRANSPORT_MAX_PEERS];
    for (uint32_t k = 0; k < n_new; k++) {
        from[k] = -1;
        for (uint32_t i = 0; i < old->cfg.n_peers; i++)
            if (old->peers[i].id == list[k].id)
                from[k] = (int)i;
    }
    REMAP(peer_chain_index);
    REMAP(peer_head_seen);
    REMAP(peer_chain_differs);
    REMAP(peer_holds_head);
    REMAP(peer_agrees);
    REMAP(peer_saw_start);
    REMAP(peer_start);
    REMAP(peer_rolled_back);
    REMAP(heard_own);
    REMAP(heard_ours);
    REMAP(heard_own_set);
    REMAP(heard_ours_set);
    REMAP(heard_ours_at);
    REMAP(heard_ours_block);
    REMAP(start_report_logged);
    REMAP(last_own);
    REMAP(facts);
    REMAP(fact_next);
    REMAP(digest_facts);
    REMAP(digest_next);
    memmove(n->peers, list, n_new * sizeof *list);
    n->cfg.n_peers = n_new;
    free(old);
    return 0;
}

/* Peers for configuration m: this node, then every member with a known
 * address (ctx first, then what this node knew); while this node has not
 * been a member, the peers it had stay too (invariant 3). */
static uint32_t peers_for(node *n, const px_members *m, const uint8_t *ctx,
                          uint32_t ctx_len, net_peer_addr *out)
{
    net_peer_addr given[TRANSPORT_MAX_PEERS];
    uint32_t n_given = 0;
    const uint8_t *nl = ctx_len ? memchr(ctx, '\n', ctx_len) : NULL;
    if (nl)
        ctx_len = (uint32_t)(nl - ctx);   /* the addresses' line */
    if (ctx_len) {
        char spec[PX_CONFIG_MAX_CONTEXT + 1], err[160];
        memcpy(spec, ctx, ctx_len);
        spec[ctx_len] = '\0';
        if (net_parse_peers(spec, given, TRANSPORT_MAX_PEERS, &n_given, err,
                            sizeof err) < 0) {
            fprintf(stderr, "paxosfs: node %u: addresses of a configuration "
                    "not understood (%s): keeping the known ones\n",
                    n->cfg.id, err);
            n_given = 0;
        }
    }
    uint32_t k = 0;
    const net_peer_addr *self = addr_of(n, n->cfg.id);
    for (uint32_t i = 0; i < n_given && !self; i++)
        if (given[i].id == n->cfg.id)
            self = &given[i];
    if (self)
        out[k++] = *self;
    for (uint32_t i = 0; i < m->n_voters + m->n_learners &&
                         k < TRANSPORT_MAX_PEERS; i++) {
        uint32_t id = i < m->n_voters ? m->voters[i]
                                      : m->learners[i - m->n_voters];
        if (id == n->cfg.id)
            continue;
        const net_peer_addr *a = NULL;
        for (uint32_t j = 0; j < n_given && !a; j++)
            if (given[j].id == id)
                a = &given[j];
        if (!a)
            a = addr_of(n, id);
        if (!a) {
            fprintf(stderr, "paxosfs: node %u: no address known for member "
                    "%u: not connecting to it\n", n->cfg.id, id);
            continue;
        }
        out[k++] = *a;
    }
    if (!n->mem.was_member)   /* invariant 3 */
        for (uint32_t i = 0; i < n->cfg.n_peers && k < TRANSPORT_MAX_PEERS;
             i++) {
            bool have = false;
            for (uint32_t j = 0; j < k; j++)
                have |= out[j].id == n->peers[i].id;
            if (!have)
                out[k++] = n->peers[i];
        }
    return k;
}

/* Make n->peers and the transport those of configuration m. */
static void follow(node *n, const px_members *m, const uint8_t *ctx,
                   uint32_t ctx_len)
{
    net_peer_addr list[TRANSPORT_MAX_PEERS];
    uint32_t k = peers_for(n, m, ctx, ctx_len, list);
    if (k == 0)
        return;   /* no address for this node itself: keep what it has */
    /* removed, or moved to another address */
    for (uint32_t i = 0; n->net && i < n->cfg.n_peers; i++) {
        const net_peer_addr *p = &n->peers[i];
        bool keep = false;
        for (uint32_t j = 0; j < k; j++)
            keep |= list[j].id == p->id && list[j].port == p->port &&
                    strcmp(list[j].host, p->host) == 0;
        if (!keep && p->id != n->cfg.id &&
            transport_remove_peer(n->net, p->id) == 0)
            fprintf(stderr, "paxosfs: node %u: node %u left the "
                    "configuration: disconnected\n", n->cfg.id, p->id);
    }
    if (remap(n, list, k) < 0) {
        fprintf(stderr, "paxosfs: node %u: out of memory following a "
                "configuration change\n", n->cfg.id);
        return;
    }
    for (uint32_t i = 0; n->net && i < k; i++) {
        if (list[i].id == n->cfg.id)
            continue;
        char err[200];
        int rc = transport_add_peer(n->net, &list[i], err, sizeof err);
        if (rc == 0)
            fprintf(stderr, "paxosfs: node %u: connecting to node %u at "
                    "%s:%u\n", n->cfg.id, list[i].id, list[i].host,
                    list[i].port);
        else if (rc != -EEXIST)
            fprintf(stderr, "paxosfs: node %u: cannot connect to node %u: "
                    "%s\n", n->cfg.id, list[i].id, err);
    }
}

/* ------------------------------------------------------------ answers */

static void send_answer(node *n, uint32_t to, uint64_t token,
                        const char *text);

static void answer(node *n, const char *text)
{
    struct node_members *mm = &n->mem;
    if (!mm->busy)
        return;
    mm->busy = false;
    if (mm->origin == 0) {
        if (n->adm)
            admin_answer(n->adm, text);
    } else if (mm->origin != UINT32_MAX) {
        send_answer(n, mm->origin, mm->origin_token, text);
    }
    if (mm->origin != UINT32_MAX || strncmp(text, "ok", 2) == 0)
        fprintf(stderr, "paxosfs: node %u: membership change \"%s\": %s\n",
                n->cfg.id, mm->what, text);
}

static void describe(const px_members *m, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "voters");
    for (uint32_t i = 0; i < m->n_voters && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%u", i ? "," : " ",
                              m->voters[i]);
    if (m->n_learners && k < cap)
        k += (size_t)snprintf(buf + k, cap - k, "; learners");
    for (uint32_t i = 0; i < m->n_learners && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%u", i ? "," : " ",
                              m->learners[i]);
}

/* The core's refusals (px.h) in words; the first word after "error: " is
 * what paxosctl maps to its exit status. */
static void refusal(int rc, const char *why, char *buf, size_t cap)
{
    if (rc == -EBUSY)
        snprintf(buf, cap, "error: busy: another membership change is not "
                 "committed yet (one at a time); retry when it is");
    else if (rc == -EAGAIN)
        snprintf(buf, cap, "error: again: %s; retry", why && why[0] ? why :
                 "the leader cannot change the configuration right now (it "
                 "has not committed a slot of its own yet, or hands over)");
    else if (rc == -EINVAL)
        snprintf(buf, cap, "error: invalid: %s", why && why[0] ? why :
                 "not a valid next configuration (one voter at a time; at "
                 "least one voter; not the one in force)");
    else
        snprintf(buf, cap, "error: %s: %s", strerror(-rc), why ? why : "");
}

/* ------------------------------------------------- a configuration in */

/* Whether configuration m shows the change `op` made ("add ID=...",
 * "remove ID", "promote ID", as forwarded). */
static bool change_in(const px_members *m, const char *op)
{
    unsigned long id = 0;
    if (sscanf(op, "add %lu=", &id) == 1)
        return has_id(m, (uint32_t)id, false);
    if (sscanf(op, "remove %lu", &id) == 1)
        return !has_id(m, (uint32_t)id, false);
    if (sscanf(op, "promote %lu", &id) == 1)
        return has_id(m, (uint32_t)id, true);
    return false;
}

void members_on_config(node *n, uint64_t slot, const px_members *m,
                       const uint8_t *ctx, uint32_t ctx_len)
{
    struct node_members *mm = &n->mem;
    mm->in_force = *m;
    mm->config_index = slot;
    mm->changes_applied++;
    bool member = has_id(m, n->cfg.id, false);
    char desc[200];
    describe(m, desc, sizeof desc);
    fprintf(stderr, "paxosfs: node %u: configuration at block %" PRIu64
            " in force: %s\n", n->cfg.id, slot, desc);
    if (member && mm->removed)
        fprintf(stderr, "paxosfs: node %u: a member again\n", n->cfg.id);
    if (!member && mm->was_member && !mm->removed)
        fprintf(stderr, "paxosfs: node %u: removed from the configuration "
                "at block %" PRIu64 ": the mount refuses writes (EROFS) "
                "from now on\n", n->cfg.id, slot);
    if (member) {
        mm->was_member = true;
        mm->removed = false;
    } else if (mm->was_member) {
        mm->removed = true;
    }
    follow(n, m, ctx, ctx_len);
    if (mm->busy && !mm->slot && mm->origin == 0 && change_in(m, mm->what)) {
        /* forwarded, and in force: the leader's answer may never come
         * (a removed leader's frames are dropped from now on) */
        char text[300];
        snprintf(text, sizeof text, "ok: configuration at block %" PRIu64
                 ": %s", slot, desc);
        answer(n, text);
    }
    if (mm->busy && mm->slot && slot >= mm->slot) {
        char text[300];
        if (slot == mm->slot)
            snprintf(text, sizeof text, "ok: configuration at block %"
                     PRIu64 ": %s", slot, desc);
        else
            snprintf(text, sizeof text, "error: again: another "
                     "configuration was committed at block %" PRIu64
                     " (leadership changed); see member list", slot);
        answer(n, text);
    }
}

/* Applied entries (loop.c edge_applied): a CONFIG. */
void members_applied(node *n, const px_entry *e)
{
    if (e->kind != PX_ENTRY_CONFIG)
        return;
    px_members m;
    const uint8_t *ctx = NULL;
    uint32_t len = 0;
    if (px_config_decode(e->data, e->len, &m, &ctx, &len) == 0)
        members_on_config(n, e->slot, &m, ctx, len);
}

/* A snapshot was installed: its configuration is in force. */
void members_installed(node *n, const snap_info *info)
{
    px_members m;
    const uint8_t *ctx = NULL;
    uint32_t len = 0;
    if (px_config_decode(info->membership, info->membership_len, &m, &ctx,
                         &len) == 0)
        members_on_config(n, info->index, &m, ctx, len);
}

int members_init(node *n, const px_members *initial)
{
    struct node_members *mm = &n->mem;
    memcpy(mm->seed, n->peers, n->cfg.n_peers * sizeof *n->peers);
    mm->n_seed = n->cfg.n_peers;
    mm->in_force = *initial;
    px_members m;
    const uint8_t *ctx = NULL;
    uint32_t len = 0;
    uint64_t index = 0;
    bool in_snap = false;
    if (host_config_found(n->host, &m, &ctx, &len, &index, &in_snap)) {
        char desc[200];
        describe(&m, desc, sizeof desc);
        fprintf(stderr, "paxosfs: node %u: configuration in force: %s (%s "
                "%" PRIu64 "; --peers only seeds addresses)\n", n->cfg.id,
                desc, in_snap ? "from the snapshot at" : "from chain block",
                index);
        mm->in_force = m;
        mm->config_index = index;
        mm->from_chain = true;
        mm->was_member = has_id(&m, n->cfg.id, false);
        /* a node removed earlier stays removed across restarts: it was a
         * member if its chain holds a CONFIG (it joined through one, or
         * started with the first members), unless it is started with
         * --join again (restarted before it was added) */
        mm->removed = !mm->was_member && !n->cfg.join;
        if (mm->removed)
            mm->was_member = true;   /* --join: not added yet, joining */
        follow(n, &m, ctx, len);
        if (mm->removed)
            fprintf(stderr, "paxosfs: node %u: not a member of the "
                    "configuration in force: the mount refuses writes "
                    "(EROFS)\n", n->cfg.id);
    } else {
        mm->was_member = has_id(initial, n->cfg.id, false);
    }
    mm->next_token = node_random_u64() | 1;
    return 0;
}

/* -------------------------------------------------------- the leader */

static int parse_id(const char *s, uint32_t *id)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v == 0 || v > UINT32_MAX)
        return -EINVAL;
    *id = (uint32_t)v;
    return 0;
}

static void drop_id(px_members *m, uint32_t id)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->n_voters; i++)
        if (m->voters[i] != id)
            m->voters[k++] = m->voters[i];
    m->n_voters = k;
    k = 0;
    for (uint32_t i = 0; i < m->n_learners; i++)
        if (m->learners[i] != id)
            m->learners[k++] = m->learners[i];
    m->n_learners = k;
}

/* Propose the change `op` ("add ID=HOST:PORT", "remove ID", "promote
 * ID") here, the leader.  0: proposed (mm->slot); otherwise a negative
 * errno with the answer in text. */
static int propose(node *n, const char *op, char *text, size_t cap)
{
    px_status st;
    px_get_status(n->px, &st);
    if (st.role != PX_LEADER) {
        char why[80];
        snprintf(why, sizeof why, "not the leader (the leader is node %u)",
                 st.leader_id);
        refusal(-EAGAIN, why, text, cap);
        return -EAGAIN;
    }
    px_members want = st.members;
    net_peer_addr added = {0}, *extra = NULL;
    char why[200] = "";
    uint32_t id = 0;
    int rc = 0;
    if (strncmp(op, "add ", 4) == 0) {
        uint32_t got = 0;
        rc = net_parse_peers(op + 4, &added, 1, &got, why, sizeof why);
        if (rc == 0 && got == 1 && has_id(&want, added.id, false)) {
            snprintf(why, sizeof why, "node %u is a member already",
                     added.id);
            rc = -EINVAL;
        } else if (rc == 0 && want.n_voters + want.n_learners >=
                              TRANSPORT_MAX_PEERS) {
            snprintf(why, sizeof why, "at most %d members",
                     TRANSPORT_MAX_PEERS);
            rc = -EINVAL;
        } else if (rc == 0) {
            want.learners[want.n_learners++] = added.id;
            extra = &added;
        }
    } else if (strncmp(op, "remove ", 7) == 0) {
        rc = parse_id(op + 7, &id);
        if (rc == 0 && !has_id(&want, id, false)) {
            snprintf(why, sizeof why, "node %u is not a member", id);
            rc = -EINVAL;
        } else if (rc == 0) {
            drop_id(&want, id);
        } else {
            snprintf(why, sizeof why, "want: remove ID");
        }
    } else if (strncmp(op, "promote ", 8) == 0) {
        rc = parse_id(op + 8, &id);
        if (rc == 0 && (!has_id(&want, id, false) ||
                        has_id(&want, id, true))) {
            snprintf(why, sizeof why, "node %u is not a learner", id);
            rc = -EINVAL;
        } else if (rc == 0) {
            drop_id(&want, id);
            want.voters[want.n_voters++] = id;
        } else {
            snprintf(why, sizeof why, "want: promote ID");
        }
    } else {
        snprintf(why, sizeof why, "unknown change (want: add ID=HOST:PORT | "
                 "remove ID | promote ID)");
        rc = -EINVAL;
    }
    char ctx[PX_CONFIG_MAX_CONTEXT + 1];
    int clen = 0;
    if (rc == 0) {
        clen = format_addrs(n, &want, extra, ctx, sizeof ctx, why,
                            sizeof why);
        if (clen < 0)
            rc = -EINVAL;
    }
    if (rc == 0) {
        /* after the addresses, on a line of its own: what changed and who
         * asked (shown in .chain; peers_for reads the first line only) */
        uint32_t origin = n->mem.origin;
        char who[80];
        if (origin == UINT32_MAX)
            snprintf(who, sizeof who, "by leader %u: caught up", n->cfg.id);
        else if (origin == 0)
            snprintf(who, sizeof who, "at node %u's admin socket",
                     n->cfg.id);
        else
            snprintf(who, sizeof who, "at node %u's admin socket, through "
                     "leader %u", origin, n->cfg.id);
        int w = snprintf(ctx + clen, sizeof ctx - (size_t)clen, "\n%s (%s)",
                         op, who);
        if (w > 0 && (size_t)clen + (size_t)w < sizeof ctx)
            clen += w;
        else
            ctx[clen] = '\0';   /* no room: the addresses alone */
    }
    if (rc == 0) {
        px_event ev = { .type = PX_EV_CHANGE_MEMBERS };
        ev.u.change.members = want;
        ev.u.change.context = (const uint8_t *)ctx;
        ev.u.change.context_len = (uint32_t)clen;
        rc = n->fatal ? -EAGAIN : host_step(n->host, &ev);
        if (rc == 0) {
            px_get_status(n->px, &st);
            n->mem.slot = st.config_slot;
            n->mem.want = want;
            return 0;
        }
        why[0] = '\0';
    }
    refusal(rc, why, text, cap);
    return rc;
}

/* A change to make here (the leader), from `origin` (0: this node's
 * admin socket, UINT32_MAX: the node itself).  Answered now when refused,
 * else once committed. */
static void send_answer(node *n, uint32_t to, uint64_t token,
                        const char *text)
{
    if (!n->net)
        return;
    wire_member w = { .from = n->cfg.id, .to = to, .token = token,
                      .answer = 1,
                      .len = (uint16_t)strnlen(text, WIRE_MAX_MEMBER_TEXT),
                      .text = text };
    member_send(n, &w);
}

/* A change to make here (the leader), from `origin` (0: this node's
 * admin socket, UINT32_MAX: the node itself, else a member that
 * forwarded it).  0: proposed, answered once committed (answer).
 * Otherwise refused now: the words in text; a forwarding member has its
 * answer already, the admin socket's caller replies with them. */
static int change_here(node *n, uint32_t origin, uint64_t token,
                       const char *op, char *text, size_t cap)
{
    struct node_members *mm = &n->mem;
    if (mm->busy) {
        refusal(-EBUSY, NULL, text, cap);
    } else {
        mm->busy = true;
        mm->origin = origin;
        mm->origin_token = token;
        mm->slot = 0;
        snprintf(mm->what, sizeof mm->what, "%s", op);
        mm->deadline_ms = node_now_ms() + MEMBERS_ANSWER_MS;
        if (propose(n, op, text, cap) == 0)
            return 0;
        mm->busy = false;
        if (origin != UINT32_MAX)
            fprintf(stderr, "paxosfs: node %u: membership change \"%s\": "
                    "%s\n", n->cfg.id, op, text);
    }
    if (origin != 0 && origin != UINT32_MAX)
        send_answer(n, origin, token, text);
    return -1;
}

/* ------------------------------------------- announcements (inv. 4) */

/* Every member of the configuration in force this node has not heard from
 * for MEMBERS_SILENT_MS: "I am a member, here". */
static void announce(node *n, uint64_t now)
{
    struct node_members *mm = &n->mem;
    if (!n->net || mm->removed || !mm->was_member ||
        now - mm->last_announce_ms < MEMBERS_ANNOUNCE_EVERY_MS)
        return;
    mm->last_announce_ms = now;
    const net_peer_addr *self = addr_of(n, n->cfg.id);
    if (!self)
        return;
    char text[WIRE_MAX_MEMBER_TEXT + 1];
    int len = snprintf(text, sizeof text, "%u=%s:%u", self->id, self->host,
                       self->port);
    if (len < 0 || (size_t)len > WIRE_MAX_MEMBER_TEXT)
        return;
    uint32_t count = transport_peer_count(n->net);
    for (uint32_t i = 0; i < count; i++) {
        transport_peer_stats st;
        transport_peer_stats_get(n->net, i, &st);
        if (st.id == n->cfg.id || !has_id(&mm->in_force, st.id, false) ||
            (st.last_recv_ms && now - st.last_recv_ms < MEMBERS_SILENT_MS))
            continue;
        wire_member w = { .from = n->cfg.id, .to = st.id,
                          .token = mm->config_index,
                          .answer = WIRE_MEMBER_ANNOUNCE,
                          .len = (uint16_t)len, .text = text };
        if (member_send(n, &w) == 0)
            mm->announces_sent++;
    }
}

/* An announcement: connect to its sender if this node does not know it
 * and holds an older configuration than the sender's. */
static void on_announce(node *n, const wire_member *w, const char *text)
{
    struct node_members *mm = &n->mem;
    if (integrity_peer_slot(n, w->from) < n->cfg.n_peers)
        return;   /* known: nothing to learn */
    net_peer_addr a;
    uint32_t got = 0;
    char err[160];
    if (net_parse_peers(text, &a, 1, &got, err, sizeof err) < 0 || got != 1 ||
        a.id != w->from || w->token <= mm->config_index ||
        n->cfg.n_peers >= TRANSPORT_MAX_PEERS) {
        if (mm->announces_ignored++ % 64 == 0)
            fprintf(stderr, "paxosfs: node %u: ignored node %u's announcement "
                    "(%s; %" PRIu64 " ignored so far)\n", n->cfg.id, w->from,
                    got != 1 || a.id != w->from ? "not its own address"
                    : w->token <= mm->config_index
                    ? "its configuration is not newer"
                    : "no room for another peer", mm->announces_ignored);
        return;
    }
    net_peer_addr list[TRANSPORT_MAX_PEERS];
    memcpy(list, n->peers, n->cfg.n_peers * sizeof *list);
    list[n->cfg.n_peers] = a;
    if (remap(n, list, n->cfg.n_peers + 1) < 0)
        return;
    char why[200];
    int rc = transport_add_peer(n->net, &a, why, sizeof why);
    mm->announces_taken++;
    fprintf(stderr, "paxosfs: node %u: node %u at %s:%u says it is a member "
            "of the configuration at block %" PRIu64 " (this node has block %"
            PRIu64 "'s): %s%s\n", n->cfg.id, a.id, a.host, a.port, w->token,
            mm->config_index, rc == 0 || rc == -EEXIST ? "connecting to it"
                                                      : "cannot connect: ",
            rc == 0 || rc == -EEXIST ? "" : why);
}

static void on_member_frame(void *arg, const wire_member *w)
{
    node *n = arg;
    char text[WIRE_MAX_MEMBER_TEXT + 1];
    memcpy(text, w->text, w->len);
    text[w->len] = '\0';
    if (w->answer == WIRE_MEMBER_ANNOUNCE) {
        on_announce(n, w, text);
        return;
    }
    if (integrity_peer_slot(n, w->from) >= n->cfg.n_peers)
        return;   /* requests and answers come from known peers only */
    if (w->answer == 0) {
        char words[400];
        change_here(n, w->from, w->token, text, words, sizeof words);
        return;
    }
    struct node_members *mm = &n->mem;
    if (mm->busy && mm->origin == 0 && mm->slot == 0 &&
        mm->forward_token == w->token)
        answer(n, text);
}

void members_start(node *n)
{
    if (n->net)
        transport_set_member_handler(n->net, on_member_frame, n);
}

/* ------------------------------------------------------------ admin */

/* Member id's match index as this node knows it: its own applied index;
 * on the leader the index the member acknowledged; elsewhere the highest
 * block the member has said it holds (its chain heads, every 250 ms).
 * false: not known here. */
static bool member_match(const node *n, const px_status *st, uint32_t id,
                         uint64_t *match)
{
    if (id == n->cfg.id) {
        *match = st->applied_index;
        return true;
    }
    if (st->role == PX_LEADER) {
        for (uint32_t j = 0; j < st->n_peers; j++)
            if (st->peers[j].id == id) {
                *match = st->peers[j].match_index;
                return true;
            }
        return false;
    }
    uint32_t k = integrity_peer_slot(n, id);
    if (k == n->cfg.n_peers || n->peer_head_seen[k] == 0)
        return false;
    *match = n->peer_head_seen[k];
    return true;
}

/* paxosctl member list and .cluster/members (fs_backend.members_text). */
int members_text(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    px_status st;
    px_get_status(n->px, &st);
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    if (!fp)
        return -ENOMEM;
    fprintf(fp, "# configuration at block %" PRIu64 "; leader %u; commit %"
            PRIu64 "%s\n# id address role match lag\n",
            n->mem.config_index, st.leader_id, st.commit_index,
            st.role == PX_LEADER ? "" : " (match: the highest block each "
            "member has shown this node)");
    const px_members *m = &st.members;
    for (uint32_t i = 0; i < m->n_voters + m->n_learners; i++) {
        uint32_t id = i < m->n_voters ? m->voters[i]
                                      : m->learners[i - m->n_voters];
        const net_peer_addr *a = addr_of(n, id);
        char addr[300] = "-";   /* a cluster of one started without --peers */
        if (a)
            snprintf(addr, sizeof addr, "%s:%u", a->host, a->port);
        fprintf(fp, "%u %s %s", id, addr, i < m->n_voters ? "voter"
                                                          : "learner");
        uint64_t match = 0;
        if (member_match(n, &st, id, &match))
            fprintf(fp, " %" PRIu64 " %" PRIu64 "\n", match,
                    st.commit_index > match ? st.commit_index - match : 0);
        else
            fprintf(fp, " - -\n");
    }
    if (fclose(fp) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *text = buf;
    *len = size;
    return 0;
}

void members_status_json(node *n, FILE *fp)
{
    struct node_members *mm = &n->mem;
    fprintf(fp, ",\"membership\":{\"config_index\":%" PRIu64 ",\"state\":"
            "\"%s\",\"changing\":", mm->config_index,
            mm->removed ? "removed: not a member, writes fail with EROFS"
            : has_id(&mm->in_force, n->cfg.id, true) ? "voter"
            : has_id(&mm->in_force, n->cfg.id, false) ? "learner"
                                                      : "joining");
    if (mm->busy)
        json_string(fp, mm->what);
    else
        fprintf(fp, "false");
    fprintf(fp, ",\"announcements_sent\":%" PRIu64 ",\"announcements_taken\":%"
            PRIu64 ",\"announcements_ignored\":%" PRIu64, mm->announces_sent,
            mm->announces_taken, mm->announces_ignored);
    fprintf(fp, ",\"auto_promote\":");
    if (n->cfg.no_promote)
        fprintf(fp, "false");
    else
        fprintf(fp, "%" PRIu64, n->cfg.promote_lag);
    /* every member: id, address, role; match and lag where known (the
     * leader's view; this node's own applied index) */
    px_status st;
    px_get_status(n->px, &st);
    const px_members *m = &st.members;
    fprintf(fp, ",\"members\":[");
    for (uint32_t i = 0; i < m->n_voters + m->n_learners; i++) {
        uint32_t id = i < m->n_voters ? m->voters[i]
                                      : m->learners[i - m->n_voters];
        const net_peer_addr *a = addr_of(n, id);
        char addr[300] = "";
        if (a)
            snprintf(addr, sizeof addr, "%s:%u", a->host, a->port);
        fprintf(fp, "%s{\"id\":%u,\"address\":", i ? "," : "", id);
        json_string(fp, addr);
        fprintf(fp, ",\"role\":\"%s\"", i < m->n_voters ? "voter"
                                                       : "learner");
        uint64_t match = 0;
        if (member_match(n, &st, id, &match))
            fprintf(fp, ",\"match\":%" PRIu64 ",\"lag\":%" PRIu64, match,
                    st.commit_index > match ? st.commit_index - match : 0);
        fprintf(fp, "}");
    }
    fprintf(fp, "]}");
}

/* "member list|add|remove|promote ..." on the admin socket.  true: it was
 * one (answered in *reply, or later: admin_defer). */
bool members_admin(node *n, const char *req, char **reply)
{
    if (strncmp(req, "member ", 7) != 0)
        return false;
    const char *op = req + 7;
    if (strcmp(op, "list") == 0) {
        size_t len;
        if (members_text(n, reply, &len) < 0)
            *reply = strdup("error: out of memory");
        return true;
    }
    struct node_members *mm = &n->mem;
    char text[400];
    if (mm->busy) {
        refusal(-EBUSY, NULL, text, sizeof text);
        *reply = strdup(text);
        return true;
    }
    if (mm->removed) {
        *reply = strdup("error: invalid: this node is not a member; ask a "
                        "member");
        return true;
    }
    if (px_role(n->px) == PX_LEADER) {
        /* answered once committed; a refusal at once */
        if (change_here(n, 0, 0, op, text, sizeof text) == 0)
            admin_defer(n->adm);
        else
            *reply = strdup(text);
        return true;
    }
    px_status st;
    px_get_status(n->px, &st);
    if (st.leader_id == 0 || !n->net) {
        refusal(-EAGAIN, "no leader known right now", text, sizeof text);
        *reply = strdup(text);
        return true;
    }
    /* forward to the leader; its answer comes back in a MEMBER frame */
    uint64_t token = mm->next_token++;
    wire_member w = { .from = n->cfg.id, .to = st.leader_id, .token = token,
                      .answer = 0, .len = (uint16_t)strlen(op), .text = op };
    if (w.len > WIRE_MAX_MEMBER_TEXT || member_send(n, &w) < 0) {
        refusal(-EAGAIN, "cannot reach the leader", text, sizeof text);
        *reply = strdup(text);
        return true;
    }
    mm->busy = true;
    mm->origin = 0;
    mm->slot = 0;
    mm->forward_token = token;
    snprintf(mm->what, sizeof mm->what, "%s (via node %u)", op, st.leader_id);
    mm->deadline_ms = node_now_ms() + MEMBERS_FORWARD_MS;
    admin_defer(n->adm);
    return true;
}

/* ------------------------------------------------------- every turn */

void members_turn(node *n, uint64_t now)
{
    struct node_members *mm = &n->mem;
    announce(n, now);
    if (mm->busy && now >= mm->deadline_ms) {
        char text[300];
        if (mm->slot)
            snprintf(text, sizeof text, "error: again: proposed at block %"
                     PRIu64 " but not committed within %d ms (it may still "
                     "commit; see member list)", mm->slot, MEMBERS_ANSWER_MS);
        else
            snprintf(text, sizeof text, "error: again: the leader did not "
                     "answer within %d ms (see member list)",
                     MEMBERS_FORWARD_MS);
        answer(n, text);
    }
    /* automatic promotion: the leader, one learner at a time */
    if (n->cfg.no_promote || mm->busy ||
        now < mm->last_promote_ms + MEMBERS_PROMOTE_EVERY_MS ||
        px_role(n->px) != PX_LEADER)
        return;
    mm->last_promote_ms = now;
    px_status st;
    px_get_status(n->px, &st);
    if (st.members.n_learners == 0 || st.config_slot || st.transfer_to)
        return;
    for (uint32_t i = 0; i < st.members.n_learners; i++) {
        uint32_t id = st.members.learners[i];
        for (uint32_t j = 0; j < st.n_peers; j++) {
            if (st.peers[j].id != id || st.peers[j].match_index == 0)
                continue;
            uint64_t lag = st.commit_index - (st.peers[j].match_index <
                                              st.commit_index
                                              ? st.peers[j].match_index
                                              : st.commit_index);
            if (lag > n->cfg.promote_lag)
                continue;
            char op[32];
            snprintf(op, sizeof op, "promote %u", id);
            char words[400];
            change_here(n, UINT32_MAX, 0, op, words, sizeof words);
            if (mm->busy)
                fprintf(stderr, "paxosfs: node %u: learner %u lags %" PRIu64
                        " slots (at most %" PRIu64 "): promoting it to "
                        "voter\n", n->cfg.id, id, lag, n->cfg.promote_lag);
            else   /* refused now (not yet, busy): quietly, later */
                mm->last_promote_ms = now + MEMBERS_PROMOTE_BACKOFF_MS;
            return;
        }
    }
}

/*
 * repair.c - damage found while the node runs: a periodic check of what
 * the backing directory holds, off the loop thread, and the repair from
 * the peers, with no operator action.  Every finding and what replaced
 * it goes to DIR/incidents (.chain/incidents under the mount).
 *
 * The check (every cfg.verify_interval_ms, on a worker thread of its
 * own): every snapshot file completely, the chain after the newest
 * valid one (every record's checksum, every hash and link), the acceptor
 * store's records (chain_verify_light and acceptor_verify_dir, read-only,
 * as `paxosctl verify` does), and the chain head found on the disk
 * against the block this node applied at that index (a chain replaced
 * under the running node, even one with valid hashes of its own).
 * Comparison with the peers' heads and their checkpoint digests runs all
 * the time (integrity.c, snapshot.c).  A catch-up that finds a damaged
 * block (host edge `damaged`) asks for a check at once.
 *
 * Invariants:
 *   1. Damage is acted on only when two checks in a row, the second
 *      started right after the first, report the same file, offset and
 *      reason: a file that a snapshot, a compaction or a segment roll
 *      changed under the first check is not taken for damage.
 *   2. Damage of the chain or the acceptor store stops the node at once
 *      as a failed disk does (loop.c invariant 2: no vote, no lead, every
 *      call on the mount fails with EIO at once, reads included, so no
 *      damaged byte is served); the key-value state in memory was built
 *      from blocks checked when they were applied and stays.  Before the
 *      stores are reopened (reopen.c) the damaged chain segment and every
 *      later one, and the acceptor log (its durable mark points into the
 *      removed blocks) are moved to DIR/damaged/<incident>/; the node
 *      then recovers its acceptor state from every other voter
 *      (integrity.c invariant 2), passes the start gate again, and the
 *      leader's blocks, each checked against the heads a quorum vouches
 *      for (catchup.c), are appended again.  The incident is closed once
 *      the chain is back at the head it had, with the hash it had there.
 *   3. A damaged snapshot is renamed aside (*.damaged) and replaced by a
 *      new one of the state; the chain and the state are not involved,
 *      so the node goes on voting and serving.
 *   4. A cluster of one has nobody to repair from: damage of its chain
 *      or acceptor store makes it refuse every call (EIO) until it is
 *      restarted from a backup; the log and .status say how.
 *   5. A node whose history a majority of the members positively vouch
 *      against (integrity.c invariant 4: its chain differs from the
 *      block they hold; a state digest check, snapshot.c invariant 4),
 *      or whose repair needs a snapshot not newer than its state
 *      (snapshot.c invariant 5), resets: it stops as in 2, moves every
 *      file of chain/, snap/ and acceptor/ to DIR/damaged/<incident>/
 *      (never deleted: evidence, and writes it may have acknowledged as
 *      a cluster of one), reopens as an empty node keeping its identity
 *      and its starts (reopen.c), recovers its acceptor state from every
 *      other voter, and catches up from the peers (snapshot and blocks,
 *      each vouched for by a quorum).  The incident is closed once it
 *      votes and serves again with the agreed block, and a majority with
 *      it holds its head.  A cluster of one never resets.
 */
#include "node_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../net/json.h"

enum rkind { RK_NONE = 0, RK_CHAIN, RK_REPLACED, RK_SNAPSHOT, RK_ACCEPTOR,
             RK_DIVERGED, RK_STATE, RK_BEHIND };

/* invariant 5: kinds whose repair throws the whole history away */
static bool resets(int k)
{
    return k == RK_DIVERGED || k == RK_STATE || k == RK_BEHIND;
}
enum rphase { RP_NONE = 0, RP_REOPEN, RP_CATCHUP, RP_RETAKE, RP_REFUSED };

static const char *kind_name(int k)
{
    switch (k) {
    case RK_CHAIN: return "chain";
    case RK_REPLACED: return "chain";
    case RK_SNAPSHOT: return "snapshot";
    case RK_ACCEPTOR: return "acceptor";
    case RK_DIVERGED: return "chain_diverged";
    case RK_STATE: return "state_diverged";
    case RK_BEHIND: return "lost_sync";
    default: return "none";
    }
}

/* one run of the check, filled on the worker thread */
struct verify_job {
    char dir[512];
    int rc;                     /* of the chain and snapshots */
    int kind;                   /* RK_*: what was damaged (RK_NONE: none) */
    chain_damage damage;
    uint64_t head;              /* chain head on the disk (rc 0) */
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint64_t incarnation;       /* starts the acceptor store on disk knows */
    /* the loop's, when the check started */
    uint64_t synced;            /* chain_synced_index */
    uint64_t base;              /* chain_base_index */
};

struct repair {
    worker *w;
    bool running;
    struct verify_job job;
    uint64_t next_ms;
    uint64_t checks, check_ms, last_check_ms;
    uint64_t started_ms;
    /* invariant 1: a finding waiting for the second check */
    bool suspect;
    int suspect_kind;
    chain_damage suspect_damage;
    /* the damage being repaired */
    int phase;
    int kind;
    chain_damage damage;
    uint64_t found_ms, found_wall_ms;
    uint64_t old_head;
    uint8_t old_hash[CHAIN_HASH_BYTES];
    uint64_t old_base;
    uint64_t incident;          /* its number */
    uint64_t snaps_taken;       /* RP_RETAKE: taken before */
    uint64_t last_retake_ms;
    char moved[1000];            /* where the damaged files went */
    /* invariant 5: the block a majority agreed on when this node was
     * found diverged (0: none), who, and the snapshots installed before
     * the reset */
    uint64_t agreed_index;
    uint8_t agreed_hash[CHAIN_HASH_BYTES];
    char agreed_by[200];
    uint64_t installs_before;
    uint64_t incidents, repaired;
    uint64_t blocks_unreadable, last_block_log_ms;
};

/* ------------------------------------------------------------ incidents */

static void incidents_path(const node *n, char *out, size_t cap)
{
    snprintf(out, cap, "%s/incidents", n->data_dir);
}

static void wall_text(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, cap - k, ".%03uZ", (unsigned)(ms % 1000));
}

/* One line of incident `num` into DIR/incidents, durably (fsync): it must
 * survive the restart an operator may do next. */
static void incident_line(node *n, uint64_t num, const char *field,
                          const char *text)
{
    char path[600], when[64], line[2048];
    incidents_path(n, path, sizeof path);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_text((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
              when, sizeof when);
    int len = snprintf(line, sizeof line, "incident %" PRIu64 " %s %s: %s\n",
                       num, when, field, text);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof line) {
        len = (int)sizeof line - 1;
        line[len - 1] = '\n';
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "paxosfs: node %u: cannot record incident %" PRIu64
                " in %s: %s\n", n->cfg.id, num, path, strerror(errno));
        return;
    }
    if (write(fd, line, (size_t)len) != len || fsync(fd) != 0)
        fprintf(stderr, "paxosfs: node %u: cannot record incident %" PRIu64
                " in %s: %s\n", n->cfg.id, num, path, strerror(errno));
    close(fd);
}

/* The highest incident number DIR/incidents holds (numbering goes on
 * after a restart). */
static uint64_t incidents_last(const node *n)
{
    char path[600];
    incidents_path(n, path, sizeof path);
    FILE *fp = fopen(path, "re");
    if (!fp)
        return 0;
    uint64_t last = 0, v;
    char line[4096];
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "incident %" SCNu64, &v) == 1 && v > last)
            last = v;
    fclose(fp);
    return last;
}

#define INCIDENTS_SHOWN (1u << 20)   /* .chain/incidents: the last MiB */

int repair_incidents_text(void *ctx, char **text, size_t *len)
{
    node *n = ctx;
    char path[600];
    incidents_path(n, path, sizeof path);
    *text = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return -errno;
    struct stat st;
    off_t from = 0;
    size_t size = 0;
    if (fd >= 0 && fstat(fd, &st) == 0) {
        size = (size_t)st.st_size;
        if (size > INCIDENTS_SHOWN) {
            from = (off_t)(size - INCIDENTS_SHOWN);
            size = INCIDENTS_SHOWN;
        }
    }
    char *buf = malloc(size + 1);
    if (!buf) {
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    ssize_t got = 0;
    if (fd >= 0) {
        got = pread(fd, buf, size, from);
        close(fd);
        if (got < 0) {
            free(buf);
            return -EIO;
        }
    }
    buf[got] = '\0';
    *text = buf;
    *len = (size_t)got;
    return 0;
}

/* ---------------------------------------------------------- the check */

static int run_verify(void *arg)
{
    struct verify_job *j = arg;
    j->kind = RK_NONE;
    j->head = 0;
    j->incarnation = UINT64_MAX;
    memset(&j->damage, 0, sizeof j->damage);
    chain_restored out;
    chain_restore_report rep;
    chain_damage dmg;
    memset(&dmg, 0, sizeof dmg);
    int rc = chain_verify_light(j->dir, NULL, &out, &rep, &dmg);
    j->rc = rc;
    if (rc == 0) {
        j->head = out.index;
        memcpy(j->head_hash, out.head_hash, CHAIN_HASH_BYTES);
        chain_restored_close(&out);
    } else if (rc == -EBADMSG) {
        j->kind = strstr(dmg.path, "/snap/") ? RK_SNAPSHOT : RK_CHAIN;
        j->damage = dmg;
        return 0;
    }
    acceptor_verify v;
    memset(&v, 0, sizeof v);
    int arc = acceptor_verify_dir(j->dir, &v);
    if (arc == 0)
        j->incarnation = v.info.incarnation;
    if (arc == -EBADMSG) {
        j->kind = RK_ACCEPTOR;
        j->damage = v.damage;
        if (!j->damage.path[0])
            snprintf(j->damage.path, sizeof j->damage.path, "%s", v.path);
    }
    return 0;
}

static bool same_damage(const chain_damage *a, const chain_damage *b)
{
    return strcmp(a->path, b->path) == 0 && a->offset == b->offset &&
           strcmp(a->reason, b->reason) == 0;
}

/* The disk's chain head against the block this node applied there, and
 * against what this node had made durable when the check started (a
 * shorter chain on the disk is an older copy put in its place). */
static bool head_replaced(node *n, const struct verify_job *j,
                          chain_damage *d)
{
    uint8_t ours[CHAIN_HASH_BYTES];
    if (j->head == 0 || j->head <= chain_base_index(n->chain) ||
        j->head > chain_head_index(n->chain) ||
        chain_hash_at(n->chain, j->head, ours) < 0 ||
        memcmp(ours, j->head_hash, CHAIN_HASH_BYTES) == 0) {
        if (j->head < j->synced && j->synced > j->base &&
            chain_base_index(n->chain) == j->base) {
            memset(d, 0, sizeof *d);
            snprintf(d->path, sizeof d->path, "%s/chain", n->data_dir);
            d->index = j->head + 1;
            snprintf(d->reason, sizeof d->reason, "the chain on the disk "
                     "ends at block %" PRIu64 ", before block %" PRIu64
                     " this node had made durable (an older copy was put "
                     "in its place)", j->head, j->synced);
            return true;
        }
        return false;
    }
    memset(d, 0, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s/chain", n->data_dir);
    d->index = j->head;
    snprintf(d->reason, sizeof d->reason, "block %" PRIu64 " on the disk is "
             "not the block this node applied (the chain was replaced)",
             j->head);
    return true;
}

static void found(node *n, int kind, const chain_damage *d);

static void check_done(node *n, uint64_t now)
{
    struct repair *r = n->rep;
    struct verify_job *j = &r->job;
    r->checks++;
    r->check_ms = now - r->started_ms;
    r->last_check_ms = now;
    int kind = j->kind;
    chain_damage d = j->damage;
    if (kind == RK_NONE && j->rc == 0 && head_replaced(n, j, &d))
        kind = RK_REPLACED;
    if (kind == RK_NONE && j->incarnation != UINT64_MAX &&
        j->incarnation < n->start.counter) {
        kind = RK_ACCEPTOR;
        memset(&d, 0, sizeof d);
        snprintf(d.path, sizeof d.path, "%s/acceptor/log", n->data_dir);
        snprintf(d.reason, sizeof d.reason, "the store on the disk knows %"
                 PRIu64 " starts of this node, which is in start %" PRIu64
                 " (an older copy was put in its place)", j->incarnation,
                 n->start.counter);
    }
    if (kind == RK_NONE || n->fatal || r->phase != RP_NONE) {
        r->suspect = false;
        return;
    }
    if (r->suspect && r->suspect_kind == kind &&
        same_damage(&r->suspect_damage, &d)) {
        r->suspect = false;
        found(n, kind, &d);
        return;
    }
    /* invariant 1: once more, right away */
    r->suspect = true;
    r->suspect_kind = kind;
    r->suspect_damage = d;
    r->next_ms = now;
}

void repair_check_now(node *n)
{
    if (n->rep && n->rep->phase == RP_NONE)
        n->rep->next_ms = 0;
}

/* A block could not be read back for a lagging peer (host edge): say so
 * and check now; the check finds the damage, this node stops leading,
 * the peer catches up from the next leader, and this node repairs. */
void repair_block_damaged(void *arg, uint64_t index, int rc)
{
    node *n = arg;
    struct repair *r = n->rep;
    if (!r)
        return;
    uint64_t now = node_now_ms();
    if (r->last_block_log_ms == 0 || now - r->last_block_log_ms >= 10000) {
        r->last_block_log_ms = now;
        fprintf(stderr, "paxosfs: node %u: block %" PRIu64 " of the chain "
                "cannot be read for a lagging peer: %s; checking the backing "
                "directory now\n", n->cfg.id, index, strerror(-rc));
    }
    r->blocks_unreadable++;
    repair_check_now(n);
}

/* ------------------------------------------------------------ repair */

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int move_file(const char *from_dir, const char *name,
                     const char *to_dir)
{
    char from[1200], to[1200];
    snprintf(from, sizeof from, "%s/%s", from_dir, name);
    snprintf(to, sizeof to, "%s/%s", to_dir, name);
    if (rename(from, to) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

/* The first block of segment file `name` (seg-<20 digits>.blk), or 0. */
static uint64_t seg_first(const char *name)
{
    unsigned long long v;
    char tail[8];
    if (strlen(name) != 28 || sscanf(name, "seg-%20llu%7s", &v, tail) != 2 ||
        strcmp(tail, ".blk") != 0)
        return 0;
    return (uint64_t)v;
}

/* Invariant 2: the segment holding block `from` and every later one, and
 * the acceptor log, into DIR/damaged/<incident>/. */
static int move_aside(node *n, uint64_t from, char *where, size_t cap)
{
    struct repair *r = n->rep;
    char base[600], to[700], chain_dir[600], acc_dir[600];
    snprintf(base, sizeof base, "%s/damaged", n->data_dir);
    snprintf(to, sizeof to, "%s/%" PRIu64, base, r->incident);
    snprintf(chain_dir, sizeof chain_dir, "%s/chain", n->data_dir);
    snprintf(acc_dir, sizeof acc_dir, "%s/acceptor", n->data_dir);
    int rc = ensure_dir(base);
    if (rc == 0)
        rc = ensure_dir(to);
    if (rc < 0)
        return rc;
    /* the segment holding `from`: the last whose first block is <= it */
    DIR *d = opendir(chain_dir);
    if (!d)
        return -errno;
    uint64_t cut = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t f = seg_first(de->d_name);
        if (f && f <= from && f > cut)
            cut = f;
    }
    rewinddir(d);
    uint32_t moved = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint64_t f = seg_first(de->d_name);
        if (f && f >= cut) {
            rc = move_file(chain_dir, de->d_name, to);
            moved += rc == 0;
        }
    }
    closedir(d);
    if (rc == 0)
        rc = move_file(acc_dir, "log", to);
    if (rc == 0)
        rc = fsync_dir(chain_dir);
    if (rc == 0)
        rc = fsync_dir(acc_dir);
    if (rc == 0)
        rc = fsync_dir(to);
    snprintf(where, cap, "%u chain segment%s from block %" PRIu64 " on and "
             "the acceptor log moved to %s", moved, moved == 1 ? "" : "s",
             cut ? cut : from, to);
    return rc;
}

static void refuse(node *n, const char *what)
{
    struct repair *r = n->rep;
    r->phase = RP_REFUSED;
    n->fatal = -EIO;   /* loop.c invariant 2, without the probe: for good */
    host_mark_failed(n->host, n->fatal);
    if (n->cl)
        client_fail_callers(n->cl, -EIO);
    char text[1800];
    snprintf(text, sizeof text, "%s; a cluster of one has no peer to repair "
             "from: refusing to serve (every call fails with EIO). Restore "
             "from a backup: stop this node, `paxosctl restore FILE NEWDIR`, "
             "start the node on NEWDIR", what);
    fprintf(stderr, "paxosfs: node %u: %s\n", n->cfg.id, text);
    incident_line(n, r->incident, "action", text);
}

/* A new incident about damage `d` of `kind`: numbered on from DIR/incidents,
 * what this node held recorded (its chain, if open), `what` logged and
 * recorded as found. */
static void incident_begin(node *n, int kind, const chain_damage *d,
                           const char *what)
{
    struct repair *r = n->rep;
    r->kind = kind;
    r->damage = *d;
    r->found_ms = node_now_ms();
    r->incident = incidents_last(n) + 1;
    r->incidents++;
    memset(r->old_hash, 0, CHAIN_HASH_BYTES);
    r->old_head = r->old_base = 0;
    if (n->chain) {   /* (at start, or in the unit tests: no stores) */
        r->old_head = chain_head_index(n->chain);
        memcpy(r->old_hash, chain_head_hash(n->chain), CHAIN_HASH_BYTES);
        r->old_base = chain_base_index(n->chain);
    }
    r->moved[0] = '\0';
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
            n->cfg.id, r->incident, what);
    incident_line(n, r->incident, "found", what);
}

static void found(node *n, int kind, const chain_damage *d)
{
    struct repair *r = n->rep;
    char what[1400];
    snprintf(what, sizeof what, "%s%s: %s offset %" PRIu64 " %s %"
             PRIu64 ": %s", kind_name(kind), resets(kind) ? "" : " damaged",
             d->path, d->offset,
             kind == RK_SNAPSHOT ? "snapshot" : kind == RK_ACCEPTOR ? "slot"
                                                                  : "block",
             d->index, d->reason);
    incident_begin(n, kind, d, what);

    if (kind == RK_SNAPSHOT) {
        /* invariant 3 */
        const char *slash = strrchr(d->path, '/');
        unsigned long long index = 0;
        int rc = -EINVAL;
        if (slash && sscanf(slash + 1, "snap-%20llu.pxs", &index) == 1)
            rc = snapstore_quarantine(host_snapstore(n->host), index);
        char text[1200];
        snprintf(text, sizeof text, "%s renamed to %s.damaged%s%s; a new "
                 "snapshot of the state is taken (the chain and the state "
                 "are not involved: still voting and serving)", d->path,
                 d->path, rc < 0 ? ": failed: " : "",
                 rc < 0 ? strerror(-rc) : "");
        incident_line(n, r->incident, "action", text);
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
                n->cfg.id, r->incident, text);
        r->snaps_taken = n->snaps_taken;
        r->last_retake_ms = 0;
        r->phase = RP_RETAKE;
        return;
    }
    if (n->cfg.n_peers <= 1) {
        refuse(n, what);   /* invariant 4 */
        return;
    }
    char text[1400];
    if (resets(kind))
        snprintf(text, sizeof text, "stopped voting, leading and serving "
                 "(calls fail with EIO); %s%s%sthis node's whole history "
                 "(chain segments, snapshots, acceptor log) goes to "
                 "%s/damaged/%" PRIu64 "/ and is kept there as evidence, "
                 "never deleted (it may hold writes that only this node "
                 "acknowledged, as a cluster of one cut off: an operator "
                 "can inspect it with paxosctl verify); the node starts "
                 "over empty and catches up from the peers",
                 r->agreed_by[0] ? "a majority vouches otherwise: " : "",
                 r->agreed_by, r->agreed_by[0] ? "; " : "", n->data_dir,
                 r->incident);
    else
        snprintf(text, sizeof text, "stopped voting, leading and serving "
                 "(calls fail with EIO); repairing from the peers");
    incident_line(n, r->incident, "action", text);
    if (resets(kind))
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
                n->cfg.id, r->incident, text);
    r->phase = RP_REOPEN;
    node_storage_failed(n, what, -EIO);   /* invariant 2 */
}

/* Invariant 5: every file of DIR/chain, DIR/snap and DIR/acceptor into
 * DIR/damaged/<incident>/ (same names), kept. */
static int move_history(node *n, char *where, size_t cap)
{
    struct repair *r = n->rep;
    static const char *const subs[] = { "chain", "snap", "acceptor" };
    char base[600], to[700];
    snprintf(base, sizeof base, "%s/damaged", n->data_dir);
    snprintf(to, sizeof to, "%s/%" PRIu64, base, r->incident);
    int rc = ensure_dir(base);
    if (rc == 0)
        rc = ensure_dir(to);
    uint32_t moved = 0;
    for (size_t i = 0; rc == 0 && i < sizeof subs / sizeof subs[0]; i++) {
        char from_dir[700], to_dir[800];
        snprintf(from_dir, sizeof from_dir, "%s/%s", n->data_dir, subs[i]);
        snprintf(to_dir, sizeof to_dir, "%s/%s", to, subs[i]);
        rc = ensure_dir(to_dir);
        if (rc < 0)
            break;
        DIR *d = opendir(from_dir);
        if (!d) {
            if (errno == ENOENT)
                continue;
            rc = -errno;
            break;
        }
        struct dirent *de;
        while (rc == 0 && (de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            rc = move_file(from_dir, de->d_name, to_dir);
            moved += rc == 0;
        }
        closedir(d);
        if (rc == 0)
            rc = fsync_dir(from_dir);
        if (rc == 0)
            rc = fsync_dir(to_dir);
    }
    if (rc == 0)
        rc = fsync_dir(to);
    snprintf(where, cap, "the whole history (%u files of chain/, snap/ and "
             "acceptor/) moved to %s, kept as evidence", moved, to);
    return rc;
}

/* Invariant 5, before the stores are reopened: no snapshot being written
 * or received (their files would land in DIR/snap after the move), the
 * history aside, and the host told to start from an empty state. */
static int reset_before_reopen(node *n)
{
    struct repair *r = n->rep;
    if (n->take || n->compacting)
        return -EBUSY;   /* the snapshot worker finishes first */
    if (n->xfer)
        snapxfer_cancel(n->xfer);
    kv_destroy(n->snap_pending);
    n->snap_pending = NULL;
    n->snap_pending_ms = 0;
    n->snap_pending_logged = false;
    char where[900];
    int rc = move_history(n, where, sizeof where);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": moving the "
                "history aside: %s\n", n->cfg.id, r->incident,
                strerror(-rc));
        return rc;
    }
    snprintf(r->moved, sizeof r->moved, "%s", where);
    incident_line(n, r->incident, "moved", where);
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
            n->cfg.id, r->incident, where);
    host_discard_state(n->host);
    /* the peers' starts this node knew came with the discarded history
     * (another cluster's directory reports other nodes' starts): they
     * are not carried into the new store (reopen.c); its own start is,
     * so that its start counter never goes back */
    memset(n->peer_start, 0, sizeof n->peer_start);
    memset(n->peer_rolled_back, 0, sizeof n->peer_rolled_back);
    return 0;
}

/* integrity.c, snapshot.c (invariant 5): a majority of the members
 * positively vouch for another history than this node's (what), or this
 * node's repair needs a snapshot it would refuse as not newer (behind).
 * False when no reset started (a cluster of one, failed storage, a repair
 * between phases). */
bool repair_reset(node *n, int what, const chain_damage *d, uint64_t index,
                  const uint8_t hash[CHAIN_HASH_BYTES], const char *who)
{
    struct repair *r = n->rep;
    if (!r || n->fatal || n->cfg.n_peers <= 1 ||
        (r->phase != RP_NONE && r->phase != RP_CATCHUP))
        return false;
    int kind = what == REPAIR_STATE ? RK_STATE
             : what == REPAIR_BEHIND ? RK_BEHIND : RK_DIVERGED;
    if (r->phase == RP_CATCHUP) {
        char text[200];
        snprintf(text, sizeof text, "superseded by incident %" PRIu64
                 " (%s)", incidents_last(n) + 1, kind_name(kind));
        incident_line(n, r->incident, "superseded", text);
        r->phase = RP_NONE;
    }
    r->suspect = false;
    r->agreed_index = index;
    if (hash)
        memcpy(r->agreed_hash, hash, CHAIN_HASH_BYTES);
    else
        memset(r->agreed_hash, 0, CHAIN_HASH_BYTES);
    snprintf(r->agreed_by, sizeof r->agreed_by, "%s", who ? who : "");
    found(n, kind, d);
    return true;
}

/* open.c: the node's chain failed its checks at start (`err` says how).
 * With peers to repair from, the damage is an incident as if found while
 * running: the segment holding the first damaged block, every later one
 * and the acceptor log go to DIR/damaged/<incident>/, and 0 tells the
 * caller to open the stores again (they then recover, and
 * repair_after_reopen follows the catch-up).  A cluster of one, damage
 * outside the chain's segments (every snapshot damaged), or a failure to
 * move the files: negative, and the start fails with `err` as before. */
int repair_at_start(node *n, const chain_damage *d, const char *err)
{
    char segs[700];
    int len = snprintf(segs, sizeof segs, "%s/chain", n->data_dir);
    bool in_chain = len > 0 && strncmp(d->path, segs, (size_t)len) == 0 &&
                    (d->path[len] == '\0' ||
                     strncmp(d->path + len, "/seg-", 5) == 0);
    if (n->cfg.n_peers <= 1 || !in_chain)
        return -EBADMSG;
    if (!n->rep)
        n->rep = calloc(1, sizeof *n->rep);
    struct repair *r = n->rep;
    if (!r)
        return -ENOMEM;
    fprintf(stderr, "paxosfs: node %u: %s\n", n->cfg.id, err);
    char what[1400];
    snprintf(what, sizeof what, "%s damaged at start: %s offset %" PRIu64
             " block %" PRIu64 ": %s", kind_name(RK_CHAIN), d->path,
             d->offset, d->index, d->reason);
    incident_begin(n, RK_CHAIN, d, what);
    r->old_head = d->index;   /* no chain open: at least this block */
    incident_line(n, r->incident, "action", "not voting, leading or serving "
                  "(calls wait, then fail); repairing from the peers");
    r->phase = RP_REOPEN;
    int rc = repair_before_reopen(n);   /* the damaged files aside */
    if (rc < 0) {
        incident_line(n, r->incident, "failed", strerror(-rc));
        r->phase = RP_NONE;
        return rc;
    }
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
            n->cfg.id, r->incident, r->moved);
    return 0;
}

/* reopen.c: the stores of a node whose storage had failed turned out
 * damaged when they were opened again.  Once (a repair already under way
 * goes on); a cluster of one is refused (invariant 4). */
void repair_found_at_reopen(node *n, const chain_damage *d)
{
    struct repair *r = n->rep;
    if (!r || r->phase != RP_NONE)
        return;
    found(n, RK_CHAIN, d);
}

/* snapshot.c: a repair (not a reset) waits for blocks from the peers. */
bool repair_catching_up(const node *n)
{
    const struct repair *r = n->rep;
    return r && r->phase == RP_CATCHUP && !resets(r->kind);
}

/* snapshot.c: a repair waits for blocks the leader compacted away and
 * its snapshot is not newer than this node's state (kept by the repair):
 * only a reset lets that snapshot in. */
bool repair_needs_reset_for(node *n, uint64_t snap_index)
{
    struct repair *r = n->rep;
    return r && r->phase == RP_CATCHUP && !resets(r->kind) &&
           snap_index <= kv_applied_index(n->state) &&
           snap_index > chain_head_index(n->chain);
}

/* reopen.c, before the stores are reopened: 0, or a negative errno (the
 * probe backs off and this runs again). */
int repair_before_reopen(node *n)
{
    struct repair *r = n->rep;
    if (!r || r->phase != RP_REOPEN || r->moved[0])
        return 0;
    if (r->kind == RK_ACCEPTOR)
        return 0;   /* the store keeps its damaged log aside itself */
    if (resets(r->kind))
        return reset_before_reopen(n);
    uint64_t from = r->kind == RK_REPLACED ? 0 : r->damage.index;
    char where[900];
    int rc = move_aside(n, from, where, sizeof where);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": moving the "
                "damaged files aside: %s\n", n->cfg.id, r->incident,
                strerror(-rc));
        return rc;
    }
    snprintf(r->moved, sizeof r->moved, "%s", where);
    incident_line(n, r->incident, "moved", where);
    return 0;
}

/* reopen.c, after the stores were reopened. */
void repair_after_reopen(node *n)
{
    struct repair *r = n->rep;
    if (!r || r->phase != RP_REOPEN)
        return;
    r->phase = RP_CATCHUP;
    char text[1400];
    if (resets(r->kind)) {
        /* nothing of the discarded state is compared again */
        memset(n->digests, 0, sizeof n->digests);
        n->state_diverged = false;
        n->cp_bad_index = 0;
        n->cp_own_index = 0;
        r->installs_before = n->snaps_installed;
        snprintf(text, sizeof text, "incident %" PRIu64 ": history reset "
                 "(the acceptor log was moved aside with it)", r->incident);
        integrity_begin_recovery(n, text);
        snprintf(text, sizeof text, "reopened as an empty node (start %"
                 PRIu64 "); recovering acceptor state from every other "
                 "voter, then catching up from the peers: their snapshot "
                 "(taken whatever its index: the discarded state is not "
                 "trusted) and the blocks after it, each checked against "
                 "heads a quorum vouches for", n->start.counter);
        incident_line(n, r->incident, "reopened", text);
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
                n->cfg.id, r->incident, text);
        return;
    }
    if (r->kind != RK_ACCEPTOR) {
        snprintf(text, sizeof text, "incident %" PRIu64 ": chain repaired "
                 "from the peers (its acceptor log was moved aside with the "
                 "damaged blocks)", r->incident);
        integrity_begin_recovery(n, text);
    } else if (!n->recovering_why[0]) {
        snprintf(text, sizeof text, "incident %" PRIu64 ": %s", r->incident,
                 r->damage.reason);
        integrity_begin_recovery(n, text);
    }
    snprintf(text, sizeof text, "stores reopened at chain head %" PRIu64
             "; recovering acceptor state from every other voter, then "
             "catching up to block %" PRIu64 " from the leader (blocks "
             "checked against heads a quorum vouches for)",
             chain_head_index(n->chain), r->old_head);
    incident_line(n, r->incident, "reopened", text);
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 ": %s\n",
            n->cfg.id, r->incident, text);
}

/* Peers that told us they hold one of our blocks at or after `from`,
 * with our hash there (catchup.c facts), as "1 (block 530), 3 (block
 * 528)"; how many. */
static uint32_t vouchers(node *n, uint64_t from, char *out, size_t cap)
{
    size_t w = 0;
    uint32_t count = 0;
    out[0] = '\0';
    uint64_t head = chain_head_index(n->chain);
    for (uint32_t k = 0; k < n->cfg.n_peers; k++) {
        if (n->cfg.peers[k].id == n->cfg.id)
            continue;
        uint64_t best = 0;
        for (uint32_t i = 0; i < NODE_FACTS; i++) {
            const struct node_fact *f = &n->facts[k][i];
            uint8_t ours[CHAIN_HASH_BYTES];
            if (f->index >= from && f->index <= head && f->index > best &&
                f->index > chain_base_index(n->chain) &&
                chain_hash_at(n->chain, f->index, ours) == 0 &&
                memcmp(ours, f->hash, CHAIN_HASH_BYTES) == 0)
                best = f->index;
        }
        if (!best)
            continue;
        count++;
        if (w < cap)
            w += (size_t)snprintf(out + w, cap - w, "%snode %u (block %"
                                  PRIu64 ")", w ? ", " : "",
                                  n->cfg.peers[k].id, best);
    }
    return count;
}

static void hex_text(const uint8_t *h, char *out)
{
    for (uint32_t i = 0; i < CHAIN_HASH_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Invariant 5: closed once the node votes and serves again, its chain
 * reached the block the majority agreed on (or a snapshot covers it) and
 * a majority with it holds its head. */
static void reset_progress(node *n, uint64_t now)
{
    struct repair *r = n->rep;
    uint64_t head = chain_head_index(n->chain);
    uint64_t base = chain_base_index(n->chain);
    if (n->fatal || !integrity_serves(n) || n->recovering_why[0] ||
        head < r->agreed_index || head == 0)
        return;
    char who[256];
    uint64_t from = r->agreed_index > base ? r->agreed_index : base + 1;
    if (vouchers(n, from, who, sizeof who) + 1 < integrity_quorum(n))
        return;
    const char *agreed = "";
    uint8_t at[CHAIN_HASH_BYTES];
    if (r->agreed_index > base && r->agreed_index > 0 &&
        chain_hash_at(n->chain, r->agreed_index, at) == 0)
        agreed = memcmp(at, r->agreed_hash, CHAIN_HASH_BYTES) == 0
                     ? "; block where the majority disagreed now holds the "
                       "hash it vouched for"
                     : "; block where the majority disagreed holds ANOTHER "
                       "hash than the one it vouched for";
    px_status st;
    px_get_status(n->px, &st);
    char snap[300] = "the blocks from block 1";
    const snap_info *s = host_snapshot(n->host);
    if (n->snaps_installed > r->installs_before && s) {
        char hx[2 * CHAIN_HASH_BYTES + 1];
        hex_text(s->head_hash, hx);
        snprintf(snap, sizeof snap, "the peers' snapshot at block %" PRIu64
                 " (head hash %s, %" PRIu64 " keys) and the blocks after it",
                 s->index, hx, s->keys);
    }
    char hh[2 * CHAIN_HASH_BYTES + 1];
    hex_text(chain_head_hash(n->chain), hh);
    char text[1600];
    snprintf(text, sizeof text, "history replaced by %s from the leader "
             "(node %u), up to chain head %" PRIu64
             " (hash %s)%s; vouched for by %s; the discarded history is "
             "kept in %s/damaged/%" PRIu64 "/; voting and serving again after %"
             PRIu64 " ms", snap, st.leader_id, head, hh, agreed, who,
             n->data_dir, r->incident, now - r->found_ms);
    incident_line(n, r->incident, "repaired", text);
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 " repaired: %s\n",
            n->cfg.id, r->incident, text);
    r->repaired++;
    r->phase = RP_NONE;
    r->agreed_index = 0;
    r->agreed_by[0] = '\0';
}

static void catchup_progress(node *n, uint64_t now)
{
    struct repair *r = n->rep;
    if (resets(r->kind)) {
        reset_progress(n, now);
        return;
    }
    uint64_t head = chain_head_index(n->chain);
    if (n->fatal || !integrity_serves(n) || n->recovering_why[0] ||
        head < r->old_head)
        return;
    uint8_t at[CHAIN_HASH_BYTES];
    bool same = r->old_head == 0 || r->old_head <= chain_base_index(n->chain)
                || (chain_hash_at(n->chain, r->old_head, at) == 0 &&
                    memcmp(at, r->old_hash, CHAIN_HASH_BYTES) == 0);
    char who[256];
    uint32_t quorum = integrity_quorum(n);
    if (vouchers(n, r->old_head, who, sizeof who) + 1 < quorum)
        return;   /* not yet a majority with this node */
    px_status st;
    px_get_status(n->px, &st);
    char text[1400];
    if (r->kind == RK_ACCEPTOR)
        snprintf(text, sizeof text, "acceptor state recovered from every "
                 "other voter (the damaged log kept as acceptor/log.damaged); "
                 "chain head %" PRIu64 "; vouched for by %s; voting and "
                 "serving again after %" PRIu64 " ms", head, who,
                 now - r->found_ms);
    else
    snprintf(text, sizeof text, "blocks up to %" PRIu64 " learned again from "
             "the leader (node %u)%s; chain head %" PRIu64 "; vouched for "
             "by %s; voting and serving again after %" PRIu64 " ms",
             r->old_head, st.leader_id,
             same ? ", the same blocks this node had applied"
                  : ", NOT the blocks this node had applied",
             head, who, now - r->found_ms);
    incident_line(n, r->incident, "repaired", text);
    fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 " repaired: %s\n",
            n->cfg.id, r->incident, text);
    r->repaired++;
    r->phase = RP_NONE;
}

static void retake_progress(node *n, uint64_t now)
{
    struct repair *r = n->rep;
    const snap_info *s = host_snapshot(n->host);
    if (n->snaps_taken > r->snaps_taken && !n->take && s) {
        char text[600];
        snprintf(text, sizeof text, "replaced by a new snapshot at block %"
                 PRIu64 " (%" PRIu64 " keys, %" PRIu64 " bytes)", s->index,
                 s->keys, s->file_bytes);
        incident_line(n, r->incident, "repaired", text);
        fprintf(stderr, "paxosfs: node %u: incident %" PRIu64 " repaired: "
                "%s\n", n->cfg.id, r->incident, text);
        r->repaired++;
        r->phase = RP_NONE;
        return;
    }
    if (!n->take && now - r->last_retake_ms >= 500) {
        r->last_retake_ms = now;
        (void)snapnode_retake(n);   /* busy or behind: again soon */
    }
}

void repair_turn(node *n, uint64_t now)
{
    struct repair *r = n->rep;
    if (!r)
        return;
    if (!r->w) {
        /* made by the loop, after the stop signals were blocked */
        if (worker_create(&r->w) < 0) {
            r->w = NULL;
            return;
        }
    }
    int rc;
    if (r->running && worker_take(r->w, &rc)) {
        r->running = false;
        check_done(n, now);
    }
    if (r->phase == RP_CATCHUP)
        catchup_progress(n, now);
    else if (r->phase == RP_RETAKE)
        retake_progress(n, now);
    if (r->running || r->phase != RP_NONE || n->fatal)
        return;
    if (now < r->next_ms)
        return;   /* UINT64_MAX: off, and nobody asked */
    if (n->take || n->compacting || n->snap_pending)
        return;   /* the files are changing: after that */
    snprintf(r->job.dir, sizeof r->job.dir, "%s", n->data_dir);
    r->job.synced = chain_synced_index(n->chain);
    r->job.base = chain_base_index(n->chain);
    if (worker_submit(r->w, run_verify, &r->job) == 0) {
        r->running = true;
        r->started_ms = now;
        r->next_ms = n->cfg.verify_interval_ms ? now + n->cfg.verify_interval_ms
                                               : UINT64_MAX;
    }
}

/* The periodic check's next run is due 0 = now; the first one runs one
 * interval after the start (the start verified everything). */
int repair_start(node *n)
{
    if (!n->rep)
        n->rep = calloc(1, sizeof *n->rep);   /* or made at start */
    if (!n->rep)
        return -ENOMEM;
    n->rep->next_ms = n->cfg.verify_interval_ms
                          ? node_now_ms() + n->cfg.verify_interval_ms
                          : UINT64_MAX;
    return 0;
}

void repair_stop(node *n)
{
    if (!n->rep)
        return;
    worker_destroy(n->rep->w);   /* waits for a running check */
    free(n->rep);
    n->rep = NULL;
}

static const char *phase_name(int p)
{
    switch (p) {
    case RP_REOPEN: return "repairing";
    case RP_CATCHUP: return "catching_up";
    case RP_RETAKE: return "retaking_snapshot";
    case RP_REFUSED: return "refused";
    default: return "none";
    }
}

/* .status "integrity": the check and the damage being repaired. */
void repair_status(node *n, FILE *fp)
{
    struct repair *r = n->rep;
    if (!r)
        return;
    uint64_t now = node_now_ms();
    fprintf(fp, ",\"integrity\":{\"verify_interval_ms\":%" PRIu64
            ",\"checks\":%" PRIu64 ",\"last_check_ms\":%" PRIu64
            ",\"last_check_ago_ms\":%" PRId64 ",\"incidents\":%" PRIu64
            ",\"repaired\":%" PRIu64 ",\"blocks_unreadable\":%" PRIu64
            ",\"state\":\"%s\"",
            n->cfg.verify_interval_ms, r->checks, r->check_ms,
            r->last_check_ms ? (int64_t)(now - r->last_check_ms) : -1,
            r->incidents, r->repaired, r->blocks_unreadable,
            phase_name(r->phase));
    if (r->phase != RP_NONE) {
        fprintf(fp, ",\"damage\":{\"incident\":%" PRIu64 ",\"kind\":\"%s\","
                "\"file\":", r->incident, kind_name(r->kind));
        json_string(fp, r->damage.path);
        fprintf(fp, ",\"offset\":%" PRIu64 ",\"index\":%" PRIu64
                ",\"reason\":", r->damage.offset, r->damage.index);
        json_string(fp, r->damage.reason);
        fprintf(fp, ",\"for_ms\":%" PRIu64 "}", now - r->found_ms);
    } else {
        fprintf(fp, ",\"damage\":null");
    }
    fprintf(fp, "}");
}

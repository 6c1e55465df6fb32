/*
 * bulkgen - a backup file of a cluster holding N keys, made with the
 * chain library's own encoders, for benchmarks at sizes that would take
 * many minutes to write through a mount:
 *
 *   bulkgen KEYS FILE [VOTERS]
 *
 * KEYS keys `bulk/k0000000`, ... under a directory `bulk`, each a file of
 * FSBENCH-like 100 random hex bytes (env BULKGEN_VALUE_BYTES changes it),
 * owned by root with mode 0644 as a mount would create them; VOTERS
 * (default 3) is the configuration the snapshot carries: voters 1..VOTERS,
 * no addresses (the nodes take them from --peers, as at a first start).
 *
 * How: in a scratch backing directory next to FILE, block 1 is a BATCH
 * with the MKDIR of `bulk`, then BATCH blocks of 256 PUTs (the encoding a
 * leader gives a slot: base/entry.h), each applied to a kv state with
 * kv_apply_entry (the state machine every replica runs) and appended to a
 * real chain with chain_append (hashes and links as a node computes
 * them); an acceptor store durable to the head; then a snapshot of the
 * state at the head through the snapshot store (snapstore_take: the file,
 * head hash, digest a node writes), and finally backup_write_dir, which
 * verifies the whole directory end to end (every block, the snapshot
 * against the chain, the state replayed) before it writes FILE: the same
 * path as `paxosctl backup`.  The scratch directory is removed.
 *
 * `paxosctl restore --new-cluster FILE DIR` then prepares each member's
 * backing directory (tools/cluster up DIR N --restore FILE does it for
 * every node).  Prints one line: keys, blocks, head, snapshot size,
 * backup size, seconds.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../base/entry.h"
#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../chain/snap.h"

#define PUTS_PER_BLOCK 256
#define BULK_CLIENT 0x62756c6b67656e31ull   /* "bulkgen1": one session */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bulkgen: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    return 1;
}

/* rm -r of the scratch directory: two levels (DIR/sub/file) is all a
 * backing directory has. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

typedef struct gen {
    kv *state;
    chain *chain;
    uint64_t seq;
    uint8_t *batch;
    size_t cap;
    uint32_t off, count;
    uint8_t op[512];
    uint8_t head[CHAIN_HASH_BYTES];
} gen;

static void batch_begin(gen *g)
{
    g->off = 4;
    g->count = 0;
}

/* One request of op bytes g->op[0..len) into the batch being built. */
static int batch_add(gen *g, int64_t len)
{
    if (len < 0)
        return (int)len;
    px_request req = { .client_id = BULK_CLIENT, .seq = g->seq,
                       .ack_seq = g->seq - 1, .len = (uint32_t)len,
                       .op = g->op };
    uint64_t need = px_batch_req_bytes((uint32_t)len);
    if (g->off + need > g->cap)
        return -ENOSPC;
    g->off += px_batch_put(g->batch + g->off, &req);
    g->count++;
    g->seq++;
    return 0;
}

/* The batch becomes block head+1: applied to the state, appended. */
static int batch_commit(gen *g)
{
    px_batch_put_header(g->batch, g->count);
    uint64_t index = chain_head_index(g->chain) + 1;
    uint64_t t = wall_ms();
    px_entry e = { .slot = index, .time_ms = t, .kind = PX_ENTRY_BATCH,
                   .len = g->off, .data = g->batch };
    int rc = kv_apply_entry(g->state, &e, NULL, NULL);
    if (rc == 0)
        rc = chain_append(g->chain, index, t, PX_ENTRY_BATCH, g->batch,
                          g->off, g->head);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bulkgen KEYS FILE [VOTERS]\n");
        return 2;
    }
    char *end;
    unsigned long long nkeys = strtoull(argv[1], &end, 10);
    if (*end || nkeys == 0 || nkeys > 100000000ull) {
        fprintf(stderr, "bulkgen: KEYS must be 1..100000000\n");
        return 2;
    }
    const char *file = argv[2];
    unsigned long voters = argc == 4 ? strtoul(argv[3], &end, 10) : 3;
    if ((argc == 4 && *end) || voters == 0 || voters > PX_MAX_MEMBERS) {
        fprintf(stderr, "bulkgen: VOTERS must be 1..%u\n", PX_MAX_MEMBERS);
        return 2;
    }
    size_t vbytes = 100;
    const char *ev = getenv("BULKGEN_VALUE_BYTES");
    if (ev) {
        vbytes = strtoul(ev, &end, 10);
        if (*end || vbytes == 0 || vbytes > 4096) {
            fprintf(stderr, "bulkgen: BULKGEN_VALUE_BYTES must be 1..4096\n");
            return 2;
        }
    }
    double t0 = now_s();

    char scratch[1100];
    int n = snprintf(scratch, sizeof scratch, "%s.gen.XXXXXX", file);
    if (n < 0 || (size_t)n >= sizeof scratch || !mkdtemp(scratch))
        return fail("scratch directory", errno ? errno : ENAMETOOLONG);

    gen g = { .seq = 1 };
    g.cap = (size_t)PUTS_PER_BLOCK * px_batch_req_bytes(64 + (uint32_t)vbytes) + 4;
    g.batch = malloc(g.cap);
    g.state = kv_create();
    int rc = g.batch && g.state ? 0 : -ENOMEM;
    chain_open_report orep;
    chain_damage dmg;
    if (rc == 0)
        rc = chain_open(scratch, &g.chain, &orep, &dmg);
    if (rc) {
        remove_tree(scratch);
        return fail("creating the chain", rc);
    }

    /* block 1: the directory, as a mount's mkdir makes it */
    batch_begin(&g);
    int64_t len = kv_op_encode_mkdir(g.op, sizeof g.op, "bulk", 4);
    if (len > 0)
        len = kv_op_encode_owner(g.op, sizeof g.op, 0, 0, 0755, g.op,
                                 (size_t)len);
    rc = batch_add(&g, len);
    if (rc == 0)
        rc = batch_commit(&g);

    uint64_t x = 0x9e3779b97f4a7c15ull;
    uint8_t val[4096];
    static const char hex[] = "0123456789abcdef";
    for (unsigned long long k = 0; rc == 0 && k < nkeys; k++) {
        if (k % PUTS_PER_BLOCK == 0)
            batch_begin(&g);
        char key[40];
        int klen = snprintf(key, sizeof key, "bulk/k%07llu", k);
        for (size_t j = 0; j < vbytes; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            val[j] = (uint8_t)hex[x & 15];
        }
        len = kv_op_encode_put(g.op, sizeof g.op, key, (size_t)klen, val,
                               (uint32_t)vbytes);
        if (len > 0)
            len = kv_op_encode_owner(g.op, sizeof g.op, 0, 0, 0644, g.op,
                                     (size_t)len);
        rc = batch_add(&g, len);
        if (rc == 0 && (g.count == PUTS_PER_BLOCK || k + 1 == nkeys))
            rc = batch_commit(&g);
    }
    if (rc == 0 && kv_invalid_ops(g.state) != 0)
        rc = -EINVAL;
    if (rc == 0 && kv_count(g.state) != nkeys + 1)   /* + the directory */
        rc = -EIO;
    if (rc == 0)
        rc = chain_sync(g.chain);
    uint64_t head = chain_head_index(g.chain);

    /* an acceptor store durable to the head, nothing promised */
    if (rc == 0) {
        acceptor_store *acc = NULL;
        acceptor_state ast;
        acceptor_open_report arep;
        rc = acceptor_open_salvage(scratch, &acc, &ast, &arep);
        if (rc == 0)
            rc = acceptor_put_recovery(acc, false);
        if (rc == 0)
            rc = acceptor_mark(acc, head, g.head);
        if (rc == 0)
            rc = acceptor_sync(acc);
        acceptor_close(acc);
    }

    /* the snapshot at the head, with the configuration */
    snap_info info;
    memset(&info, 0, sizeof info);
    if (rc == 0) {
        px_members m;
        memset(&m, 0, sizeof m);
        m.n_voters = (uint32_t)voters;
        for (uint32_t i = 0; i < m.n_voters; i++)
            m.voters[i] = i + 1;
        uint8_t blob[SNAP_MAX_MEMBERSHIP];
        int mlen = px_config_encode(&m, NULL, 0, blob, sizeof blob);
        snapstore *st = NULL;
        rc = mlen < 0 ? mlen : snapstore_open(scratch, true, &st);
        if (rc == 0)
            rc = snapstore_take(st, g.state, g.head, blob, (uint32_t)mlen,
                                &info);
        snapstore_close(st);
    }
    chain_close(g.chain);
    kv_destroy(g.state);
    free(g.batch);
    if (rc) {
        remove_tree(scratch);
        return fail("building the directory", rc);
    }
    double built = now_s();

    backup_report b;
    rc = backup_write_dir(scratch, file, &b, &dmg);
    remove_tree(scratch);
    if (rc == -EBADMSG) {
        fprintf(stderr, "bulkgen: the directory does not verify: %s offset "
                "%llu block %llu: %s\n", dmg.path,
                (unsigned long long)dmg.offset,
                (unsigned long long)dmg.index, dmg.reason);
        return 1;
    }
    if (rc)
        return fail("writing the backup", rc);
    printf("bulkgen keys=%llu value_bytes=%zu head=%llu "
           "snapshot_bytes=%llu raw_bytes=%llu backup_bytes=%llu "
           "build_s=%.1f backup_s=%.1f file=%s\n", nkeys, vbytes,
           (unsigned long long)head, (unsigned long long)info.file_bytes,
           (unsigned long long)info.raw_bytes, (unsigned long long)b.bytes,
           built - t0, now_s() - built, file);
    return 0;
}

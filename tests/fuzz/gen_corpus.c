/*
 * gen_corpus.c - writes the seed corpora of the fuzz targets in
 * tests/fuzz (one directory per target under the directory given), using
 * the real encoders and writers of paxosfs, so the seeds are well-formed
 * inputs plus a few typical damaged ones (torn tails, empty leftovers).
 *
 *   build/gen_corpus tests/fuzz/corpus      (make fuzz-corpus)
 *
 * The output is deterministic: fixed times, ids and key material, no
 * randomness.  Scratch files go to a temporary directory that is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../chain/snap.h"
#include "../../consensus/px_int.h"
#include "../../net/keys.h"

static const char *out_root;

static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s\n", what);
    exit(1);
}

static void must(int ok, const char *what)
{
    if (!ok)
        die(what);
}

/* A growable byte buffer. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        must(b->p != NULL, "out of memory");
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_u8(bytes *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put_le(bytes *b, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void seed(const char *target, const char *name, const void *p,
                 size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("cannot create a corpus directory");
    snprintf(path, sizeof path, "%s/%s/%s", out_root, target, name);
    FILE *f = fopen(path, "wb");
    must(f && fwrite(p, 1, len, f) == len && fclose(f) == 0,
         "cannot write a seed");
}

static void seed_bytes(const char *target, const char *name, const bytes *b)
{
    seed(target, name, b->p, b->len);
}

static bytes read_file(const char *path)
{
    bytes b = { 0 };
    FILE *f = fopen(path, "rb");
    must(f != NULL, "cannot read back a file");
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        put(&b, chunk, n);
    fclose(f);
    return b;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char scratch[64];

static const char *fresh_dir(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    must(mkdir(path, 0700) == 0, "cannot create a scratch directory");
    return path;
}

/* ------------------------------------------------------------ batches */

/* Append one request (client, seq, ack) holding `op` to a batch body. */
static void batch_req(bytes *body, uint32_t *count, uint64_t client,
                      uint64_t seq, uint64_t ack, const uint8_t *op,
                      uint32_t len)
{
    uint8_t rec[28];
    px_request q = { .client_id = client, .seq = seq, .ack_seq = ack, .len = 0 };
    px_batch_put(rec, &q);
    rec[24] = (uint8_t)len;
    rec[25] = (uint8_t)(len >> 8);
    rec[26] = (uint8_t)(len >> 16);
    rec[27] = (uint8_t)(len >> 24);
    put(body, rec, sizeof rec);
    put(body, op, len);
    (*count)++;
}

static bytes batch_of(const bytes *body, uint32_t count)
{
    bytes b = { 0 };
    uint8_t hdr[4];
    px_batch_put_header(hdr, count);
    put(&b, hdr, 4);
    put(&b, body->p, body->len);
    return b;
}

static uint32_t op_put(uint8_t *buf, const char *key, const char *val)
{
    int64_t n = kv_op_encode_put(buf, 512, key, strlen(key),
                                 (const uint8_t *)val, (uint32_t)strlen(val));
    must(n > 0, "kv_op_encode_put");
    return (uint32_t)n;
}

static uint32_t op_append(uint8_t *buf, const char *key, const char *val)
{
    int64_t n = kv_op_encode_append(buf, 512, key, strlen(key),
                                    (const uint8_t *)val,
                                    (uint32_t)strlen(val));
    must(n > 0, "kv_op_encode_append");
    return (uint32_t)n;
}

static uint32_t op_del(uint8_t *buf, const char *key)
{
    int64_t n = kv_op_encode_del(buf, 512, key, strlen(key));
    must(n > 0, "kv_op_encode_del");
    return (uint32_t)n;
}

static uint32_t op_rename(uint8_t *buf, const char *from, const char *to)
{
    int64_t n = kv_op_encode_rename(buf, 512, from, strlen(from), to,
                                    strlen(to));
    must(n > 0, "kv_op_encode_rename");
    return (uint32_t)n;
}

/* A batch exercising every op, duplicates and acknowledgements. */
static bytes mixed_batch(void)
{
    bytes body = { 0 };
    uint32_t count = 0, n;
    uint8_t op[512];
    n = op_put(op, "greeting", "hello\n");
    batch_req(&body, &count, 11, 1, 0, op, n);
    n = op_append(op, "greeting", "world\n");
    batch_req(&body, &count, 11, 2, 1, op, n);
    n = op_put(op, "file", "x");
    batch_req(&body, &count, 12, 1, 0, op, n);
    n = op_rename(op, "file", "moved");
    batch_req(&body, &count, 12, 2, 0, op, n);
    n = op_del(op, "missing");
    batch_req(&body, &count, 13, 5, 3, op, n);
    n = op_put(op, "greeting", "again");   /* duplicate of (11, 1) */
    batch_req(&body, &count, 11, 1, 0, op, n);
    bytes b = batch_of(&body, count);
    free(body.p);
    return b;
}

static void gen_batch(void)
{
    uint8_t op[512];
    bytes body = { 0 }, b;
    uint32_t count = 0;

    b = mixed_batch();
    seed_bytes("batch", "mixed", &b);
    free(b.p);

    b = batch_of(&body, 0);
    seed_bytes("batch", "empty", &b);
    free(b.p);

    uint32_t n = op_put(op, "a", "1");
    batch_req(&body, &count, 1, 1, 0, op, n);
    static const uint8_t bad_op[] = { 1, 0, 0 };   /* empty key */
    batch_req(&body, &count, 1, 2, 0, bad_op, sizeof bad_op);
    b = batch_of(&body, count);
    seed_bytes("batch", "malformed_op", &b);
    /* the count says one request more than there is */
    b.p[0]++;
    seed_bytes("batch", "short", &b);
    free(b.p);
    free(body.p);
}

static void gen_kv_op(void)
{
    uint8_t op[512];
    seed("kv_op", "put", op, op_put(op, "ab", "value"));
    seed("kv_op", "append", op, op_append(op, "log", "line\n"));
    seed("kv_op", "del", op, op_del(op, "gone"));
    seed("kv_op", "rename", op, op_rename(op, "from", "to-here"));
    static const uint8_t dotdot[] = { 2, 2, 0, '.', '.' };
    seed("kv_op", "dotdot", dotdot, sizeof dotdot);
    /* guarded ops: create only if absent, rename only at a version */
    uint8_t inner[512];
    uint32_t n = op_put(inner, "new", "first");
    int64_t c = kv_op_encode_cond(op, sizeof op, KV_COND_ABSENT, "new", 3, 0,
                                  inner, n);
    must(c > 0, "kv_op_encode_cond");
    seed("kv_op", "cond_absent", op, (size_t)c);
    n = op_rename(inner, "from", "to-here");
    c = kv_op_encode_cond(op, sizeof op, KV_COND_VERSION, "from", 4, 7, inner,
                          n);
    must(c > 0, "kv_op_encode_cond");
    seed("kv_op", "cond_version", op, (size_t)c);
}

static void gen_members(void)
{
    uint8_t buf[256];
    px_members m;
    memset(&m, 0, sizeof m);
    m.n_voters = 3;
    m.voters[0] = 1;
    m.voters[1] = 2;
    m.voters[2] = 3;
    int n = px_members_encode(&m, buf, sizeof buf);
    must(n > 0, "px_members_encode");
    seed("members", "three_voters", buf, (size_t)n);
    m.n_learners = 2;
    m.learners[0] = 4;
    m.learners[1] = 5;
    n = px_members_encode(&m, buf, sizeof buf);
    must(n > 0, "px_members_encode");
    seed("members", "learners", buf, (size_t)n);
    m.n_voters = 1;
    m.n_learners = 0;
    n = px_members_encode(&m, buf, sizeof buf);
    must(n > 0, "px_members_encode");
    seed("members", "one_voter", buf, (size_t)n);
}

/* ------------------------------------------------------------- chain */

/* Append blocks 1..n: a batch, a noop, a config, repeating. */
static void fill_chain(chain *c, uint32_t n)
{
    bytes batch = mixed_batch();
    uint8_t cfg[64];
    px_members m;
    memset(&m, 0, sizeof m);
    m.n_voters = 3;
    m.voters[0] = 1;
    m.voters[1] = 2;
    m.voters[2] = 3;
    int cfg_len = px_members_encode(&m, cfg, sizeof cfg);
    must(cfg_len > 0, "px_members_encode");
    for (uint32_t i = 0; i < n; i++) {
        uint64_t index = chain_head_index(c) + 1;
        uint64_t t = 1700000000000ull + 1000 * index;
        int rc;
        if (i % 3 == 0)
            rc = chain_append(c, index, t, PX_ENTRY_BATCH, batch.p,
                              (uint32_t)batch.len, NULL);
        else if (i % 3 == 1)
            rc = chain_append(c, index, t, PX_ENTRY_NOOP, NULL, 0, NULL);
        else
            rc = chain_append(c, index, t, PX_ENTRY_CONFIG, cfg,
                              (uint32_t)cfg_len, NULL);
        must(rc == 0, "chain_append");
    }
    must(chain_sync(c) == 0, "chain_sync");
    free(batch.p);
}

/* The fuzz_segment input for the segment files of dir/chain, named by
 * `firsts` (n of them; the last `empty` of them are empty leftovers). */
static bytes segment_input(const char *dir, const uint64_t *firsts,
                           uint32_t n, bool empty_tail, bool roll,
                           size_t cut_last)
{
    bytes in = { 0 };
    bytes files[4];
    uint32_t full = n - (empty_tail ? 1 : 0);
    char path[256];
    must(full >= 1 && full <= 3, "segment count");
    put_u8(&in, (uint8_t)((full - 1) | (empty_tail ? 4 : 0) | (roll ? 8 : 0)));
    for (uint32_t i = 0; i < n; i++)
        put_u8(&in, (uint8_t)firsts[i]);
    for (uint32_t i = 0; i < full; i++) {
        snprintf(path, sizeof path, "%s/chain/seg-%020llu.blk", dir,
                 (unsigned long long)firsts[i]);
        files[i] = read_file(path);
    }
    files[full - 1].len -= cut_last;
    for (uint32_t i = 0; i + 1 < full; i++)
        put_le(&in, files[i].len, 2);
    for (uint32_t i = 0; i < full; i++) {
        put(&in, files[i].p, files[i].len);
        free(files[i].p);
    }
    return in;
}

static void gen_segment(void)
{
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    bytes in;

    const char *dir = fresh_dir("seg1");
    must(chain_open(dir, &c, &rep, &dmg) == 0, "chain_open");
    uint64_t one[] = { 1, 5 };
    in = segment_input(dir, one, 1, false, false, 0);
    seed_bytes("segment", "empty", &in);
    free(in.p);
    fill_chain(c, 3);
    chain_close(c);
    in = segment_input(dir, one, 1, false, false, 0);
    seed_bytes("segment", "one_segment", &in);
    free(in.p);
    in = segment_input(dir, one, 1, false, true, 30);
    seed_bytes("segment", "torn_tail", &in);
    free(in.p);
    in = segment_input(dir, one, 2, true, false, 0);
    seed_bytes("segment", "empty_leftover", &in);
    free(in.p);

    /* small segments: a roll after every record or two */
    dir = fresh_dir("seg3");
    must(chain_open(dir, &c, &rep, &dmg) == 0, "chain_open");
    chain_set_segment_bytes(c, 256);
    fill_chain(c, 4);
    chain_close(c);
    uint64_t three[] = { 1, 2, 4 };   /* blocks 2 and 3 share one */
    in = segment_input(dir, three, 3, false, false, 0);
    seed_bytes("segment", "three_segments", &in);
    free(in.p);
}

/* ---------------------------------------------------------- acceptor */

/* The log of dir with its preallocated zero tail cut, behind the two
 * fuzz_acceptor parameter bytes. */
static bytes acceptor_input(const char *dir, uint8_t ops, uint8_t upto,
                            size_t cut_last)
{
    char path[256];
    snprintf(path, sizeof path, "%s/acceptor/log", dir);
    bytes log = read_file(path);
    while (log.len && log.p[log.len - 1] == 0)
        log.len--;
    log.len -= cut_last;
    bytes in = { 0 };
    put_u8(&in, ops);
    put_u8(&in, upto);
    put(&in, log.p, log.len);
    free(log.p);
    return in;
}

static void gen_acceptor(void)
{
    acceptor_store *a;
    acceptor_state st;
    chain_damage dmg;
    bytes in;
    static const uint8_t v1[] = "first value", v2[] = "second";

    const char *dir = fresh_dir("acc1");
    must(acceptor_open(dir, &a, &st, &dmg) == 0, "acceptor_open");
    must(acceptor_put_promise(a, (px_ballot){ 3, 1 }) == 0, "promise");
    for (uint64_t s = 1; s <= 3; s++) {
        px_entry e = { .slot = s, .ballot = { 3, 1 }, .time_ms = 100 + s,
                       .kind = PX_ENTRY_BATCH, .len = sizeof v1, .data = v1 };
        must(acceptor_put_accept(a, &e) == 0, "accept");
    }
    px_entry higher = { .slot = 2, .ballot = { 4, 2 }, .time_ms = 200,
                        .kind = PX_ENTRY_NOOP, .len = sizeof v2, .data = v2 };
    must(acceptor_put_promise(a, (px_ballot){ 4, 2 }) == 0, "promise");
    must(acceptor_put_accept(a, &higher) == 0, "accept");
    must(acceptor_sync(a) == 0, "acceptor_sync");
    in = acceptor_input(dir, 0x7, 2, 0);
    seed_bytes("acceptor", "promise_accepts", &in);
    free(in.p);
    in = acceptor_input(dir, 0x2, 0, 9);
    seed_bytes("acceptor", "torn", &in);
    free(in.p);
    must(acceptor_compact(a, 2) == 0 && acceptor_sync(a) == 0, "compact");
    acceptor_close(a);
    in = acceptor_input(dir, 0xf, 255, 0);
    seed_bytes("acceptor", "forgotten", &in);
    free(in.p);

    /* a store that never accepted anything, compacted (node shutdown) */
    dir = fresh_dir("acc2");
    must(acceptor_open(dir, &a, &st, &dmg) == 0, "acceptor_open");
    must(acceptor_compact(a, 0) == 0 && acceptor_sync(a) == 0, "compact");
    acceptor_close(a);
    in = acceptor_input(dir, 0x0, 0, 0);
    seed_bytes("acceptor", "forget_only", &in);
    free(in.p);
}

/* ---------------------------------------------------------- snapshot */

static void gen_snapshot(void)
{
    kv *s = kv_create();
    must(s != NULL, "kv_create");
    bytes batch = mixed_batch();
    px_entry e = { .slot = 1, .time_ms = 1700000000000ull,
                   .kind = PX_ENTRY_BATCH, .len = (uint32_t)batch.len,
                   .data = batch.p };
    must(kv_apply_entry(s, &e, NULL, NULL) == 0, "kv_apply_entry");
    uint8_t *snap;
    size_t snap_len;
    must(kv_snapshot_encode(s, &snap, &snap_len) == 0, "kv_snapshot_encode");

    bytes in = { 0 };
    put_u8(&in, 0);
    put(&in, snap, snap_len);
    seed_bytes("snapshot", "snapshot", &in);
    free(in.p);

    /* the payload, framed by the target (mode 1, zlib level 1) */
    uint64_t raw_len = 0;
    for (int i = 7; i >= 0; i--)
        raw_len = (raw_len << 8) | snap[24 + i];
    uint8_t *raw = malloc(raw_len);
    uLongf got = (uLongf)raw_len;
    must(raw && uncompress(raw, &got, snap + 48, (uLong)(snap_len - 48)) ==
                    Z_OK && got == raw_len, "uncompress");
    in = (bytes){ 0 };
    put_u8(&in, 1);
    put_u8(&in, 0x10);
    put(&in, raw, raw_len);
    seed_bytes("snapshot", "payload", &in);
    free(in.p);

    /* the session table inside it (mode 2) */
    uint64_t sess_len = 0;
    for (int i = 7; i >= 0; i--)
        sess_len = (sess_len << 8) | raw[8 + i];
    in = (bytes){ 0 };
    put_u8(&in, 2);
    put(&in, raw + 16, sess_len);
    seed_bytes("snapshot", "sessions", &in);
    free(in.p);

    /* that table in use, with the batch that made it applied on top */
    in = (bytes){ 0 };
    put_u8(&in, 3);
    put_le(&in, sess_len, 2);
    put(&in, raw + 16, sess_len);
    put(&in, batch.p, batch.len);
    seed_bytes("snapshot", "sessions_in_use", &in);
    free(in.p);

    kv *empty = kv_create();
    must(empty != NULL, "kv_create");
    free(snap);
    must(kv_snapshot_encode(empty, &snap, &snap_len) == 0, "encode");
    in = (bytes){ 0 };
    put_u8(&in, 0);
    put(&in, snap, snap_len);
    seed_bytes("snapshot", "empty", &in);
    free(in.p);
    free(snap);
    free(raw);
    free(batch.p);
    kv_destroy(empty);
    kv_destroy(s);
}

/* ---------------------------------------------------------- snapfile */

/* A snapshot file of `s` (snapfile_write), read back. */
static bytes snapfile_of(kv *s, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s.pxs", fresh_dir(name), name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    must(fd >= 0, "open snapshot file");
    kv_view *v;
    uint8_t head[32];
    memset(head, 0x5a, sizeof head);
    static const uint8_t members[] = "voters 1 2 3";
    must(kv_freeze(s, &v) == 0, "kv_freeze");
    must(snapfile_write(fd, v, head, members, sizeof members, NULL) == 0,
         "snapfile_write");
    kv_thaw(s, v);
    close(fd);
    return read_file(path);
}

static void gen_snapfile(void)
{
    kv *s = kv_create();
    must(s != NULL, "kv_create");
    bytes batch = mixed_batch();
    px_entry e = { .slot = 1, .time_ms = 1700000000000ull,
                   .kind = PX_ENTRY_BATCH, .len = (uint32_t)batch.len,
                   .data = batch.p };
    must(kv_apply_entry(s, &e, NULL, NULL) == 0, "kv_apply_entry");
    bytes file = snapfile_of(s, "state");
    bytes in = { 0 };
    put_u8(&in, 0);
    put_u8(&in, 3);                         /* chunks of 112 bytes */
    put(&in, file.p, file.len);
    seed_bytes("snapfile", "file", &in);
    free(in.p);

    /* the same, expected at its own index, head hash and digest */
    in = (bytes){ 0 };
    put_u8(&in, 2);
    put_u8(&in, 0);
    put(&in, file.p + 16, 8);
    put(&in, file.p + 24, 32);
    put(&in, file.p + 56, 32);
    put(&in, file.p, file.len);
    seed_bytes("snapfile", "expected", &in);
    free(in.p);

    /* its payload, framed by the target (mode 1) in frames of 64 bytes */
    uint8_t *snap;
    size_t snap_len;
    must(kv_snapshot_encode(s, &snap, &snap_len) == 0, "kv_snapshot_encode");
    uint64_t raw_len = 0;
    for (int i = 7; i >= 0; i--)
        raw_len = (raw_len << 8) | snap[24 + i];
    uint8_t *raw = malloc(raw_len);
    uLongf got = (uLongf)raw_len;
    must(raw && uncompress(raw, &got, snap + 48, (uLong)(snap_len - 48)) ==
                    Z_OK && got == raw_len, "uncompress");
    in = (bytes){ 0 };
    put_u8(&in, 1);
    put_u8(&in, 1);
    put_le(&in, 1, 8);
    put_u8(&in, 5);
    put(&in, "1 2 3", 5);
    put_le(&in, 63, 2);
    put(&in, raw, raw_len);
    seed_bytes("snapfile", "payload", &in);
    free(in.p);

    kv *empty = kv_create();
    must(empty != NULL, "kv_create");
    free(file.p);
    file = snapfile_of(empty, "empty");
    in = (bytes){ 0 };
    put_u8(&in, 0);
    put_u8(&in, 255);
    put(&in, file.p, file.len);
    seed_bytes("snapfile", "empty", &in);
    free(in.p);
    free(file.p);
    free(snap);
    free(raw);
    free(batch.p);
    kv_destroy(empty);
    kv_destroy(s);
}

/* -------------------------------------------------------------- keys */

static void gen_keys(void)
{
    uint8_t secret_bin[32];
    char secret[41], public[41], text[512];
    for (int i = 0; i < 32; i++)
        secret_bin[i] = (uint8_t)(7 * i + 1);
    must(zmq_z85_encode(secret, secret_bin, 32) != NULL, "zmq_z85_encode");
    must(zmq_curve_public(public, secret) == 0, "zmq_curve_public");
    int n = snprintf(text, sizeof text,
                     "# paxosfs cluster key: copy this file to every node "
                     "of the cluster, keep it secret\n"
                     "public: %s\nsecret: %s\n", public, secret);
    seed("keys", "keygen", text, (size_t)n);
    n = snprintf(text, sizeof text,
                 "\r\n# reordered, CRLF, spaces\r\n\r\n  secret:\t%s  \r\n"
                 "public:   %s\r\n", secret, public);
    seed("keys", "crlf", text, (size_t)n);
    n = snprintf(text, sizeof text, "public: %s\npublic: %s\n", public,
                 public);
    seed("keys", "twice", text, (size_t)n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    out_root = argv[1];
    if (mkdir(out_root, 0755) != 0 && errno != EEXIST)
        die("cannot create the output directory");
    strcpy(scratch, "/tmp/paxosfs-corpus-XXXXXX");
    must(mkdtemp(scratch) != NULL, "cannot create a scratch directory");
    gen_batch();
    gen_kv_op();
    gen_members();
    gen_segment();
    gen_acceptor();
    gen_snapshot();
    gen_snapfile();
    gen_keys();
    nftw(scratch, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

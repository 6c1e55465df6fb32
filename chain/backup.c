/*
 * backup.c - owns backup files: a snapshot of a backing directory plus the
 * chain after it, in one checked file (paxosctl backup / restore).
 *
 * Backup file (integers little-endian):
 *   offset   size  meaning
 *   0        8     magic "pxbackup"
 *   8        4     format version, 1
 *   12       4     flags, 0
 *   16       8     snapshot length F (0: no snapshot, the chain starts at
 *                  block 1)
 *   24       4     reserved, 0
 *   28       4     header checksum: CRC-32 of bytes 0..27
 *   32       F     the snapshot file, byte for byte (chain/snapfile.c)
 *   32+F     ...   block records S+1..H, each exactly as in a segment file
 *                  (chain/segment.c), S the snapshot's index (0 without)
 *   size-80  8     block count K (H = S + K)
 *   size-72  8     head index H
 *   size-64  32    head hash (hash of block H; the snapshot's head hash
 *                  when K = 0)
 *   size-32  32    SHA-256 of every byte before this field
 *
 * Invariants:
 *   1. A backup is written only from a directory that verifies end to end
 *      (chain_verify_all), to FILE.part, fsynced, then renamed: a FILE that
 *      exists is complete.
 *   2. Restore reads the whole file and checks everything (the snapshot
 *      with snap_recv, every record's checksums, the hash rule, every link
 *      from the snapshot's head hash on, the trailer, the SHA-256) before
 *      it creates anything in DIR; then it writes the snapshot and the
 *      chain, syncs them, adds an acceptor store marked recovering and
 *      durable to the head, and verifies DIR as a node would open it.  On
 *      any failure DIR is left as it was found (absent or empty).
 *   3. Memory: one record (<= 8 MiB + 108 bytes) and the state of the
 *      snapshot being checked; never a length the file claims.
 */
#include "snap.h"
#include "chain_int.h"
#include "chain_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define BK_MAGIC "pxbackup"
#define BK_VERSION 1
#define BK_HEADER 32
#define BK_TRAILER 80
#define BK_COPY (256u << 10)
#define BK_PATH 1100

/* ------------------------------------------------------------ output */

typedef struct bk_out {
    int fd;
    uint64_t off;
    chain_hasher sha;
} bk_out;

static int out_put(bk_out *o, const void *p, size_t len)
{
    if (len && EVP_DigestUpdate(o->sha.ctx, p, len) != 1)
        return -EIO;
    int rc = chain_io_pwrite_all(o->fd, p, len, o->off);
    if (rc == 0)
        o->off += len;
    return rc;
}

static int parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(out, cap, "%.*s", (int)(slash - path), path)
                  : snprintf(out, cap, ".");
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    if (out[0] == '\0')
        snprintf(out, cap, "/");
    return 0;
}

static int write_backup(chain_restored *r, bk_out *o, backup_report *rep)
{
    uint8_t h[BK_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, BK_MAGIC, 8);
    le_put32(h + 8, BK_VERSION);
    le_put64(h + 16, r->has_snap ? r->snap.file_bytes : 0);
    le_put32(h + 28, chain_crc32(h, 28));
    int rc = out_put(o, h, sizeof h);
    if (rc)
        return rc;
    uint64_t from = 1;
    if (r->has_snap) {
        snap_reader *rd;
        uint64_t size;
        rc = snapstore_reader_open(r->snaps, r->snap.index, &rd, &size);
        if (rc)
            return rc;
        if (size != r->snap.file_bytes) {
            snap_reader_close(rd);
            return -ESTALE;     /* changed since it was verified */
        }
        uint8_t *buf = malloc(BK_COPY);
        if (!buf) {
            snap_reader_close(rd);
            return -ENOMEM;
        }
        for (uint64_t off = 0; rc == 0 && off < size;) {
            int64_t got = snap_reader_read(rd, off, buf, BK_COPY);
            if (got <= 0) {
                rc = got < 0 ? (int)got : -ESTALE;
                break;
            }
            rc = out_put(o, buf, (size_t)got);
            off += (uint64_t)got;
        }
        free(buf);
        snap_reader_close(rd);
        if (rc)
            return rc;
        from = r->snap.index + 1;
    }
    uint8_t *rec = NULL;
    size_t cap = 0;
    uint64_t count = 0;
    for (uint64_t i = from; rc == 0 && i <= r->index; i++) {
        chain_block b;
        rc = chain_read(r->chain, i, &b);
        if (rc)
            break;
        size_t need = chain_record_size(b.len);
        if (need > cap) {
            uint8_t *p = realloc(rec, need);
            if (!p) {
                chain_block_free(&b);
                rc = -ENOMEM;
                break;
            }
            rec = p;
            cap = need;
        }
        chain_record_encode(rec, &b);
        chain_block_free(&b);
        rc = out_put(o, rec, need);
        count++;
    }
    free(rec);
    if (rc)
        return rc;
    uint8_t t[BK_TRAILER];
    le_put64(t, count);
    le_put64(t + 8, r->index);
    memcpy(t + 16, r->head_hash, CHAIN_HASH_BYTES);
    rc = out_put(o, t, 48);
    unsigned int n = 0;
    if (rc == 0 && (EVP_DigestFinal_ex(o->sha.ctx, t + 48, &n) != 1 ||
                    n != CHAIN_HASH_BYTES))
        rc = -EIO;
    if (rc == 0)
        rc = chain_io_pwrite_all(o->fd, t + 48, CHAIN_HASH_BYTES, o->off);
    if (rc)
        return rc;
    o->off += CHAIN_HASH_BYTES;
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->has_snap = r->has_snap;
        rep->snap_index = r->has_snap ? r->snap.index : 0;
        rep->first_block = count ? from : 0;
        rep->head = count ? r->index : 0;
        memcpy(rep->head_hash, r->head_hash, CHAIN_HASH_BYTES);
        rep->bytes = o->off;
    }
    return 0;
}

int backup_write_dir(const char *dir, const char *file, backup_report *rep,
                     chain_damage *damage)
{
    const chain_io_ops *io = chain_io();
    acceptor_verify av;
    int rc = acceptor_verify_dir(dir, &av);
    if (rc == -EBADMSG) {
        if (damage)
            *damage = av.damage;
        return rc;
    }
    if (rc)
        return rc;
    chain_restored r;
    chain_restore_report rrep;
    rc = chain_verify_all(dir, &av.info.mark, &r, &rrep, damage);
    if (rc)
        return rc;
    char part[BK_PATH], parent[BK_PATH];
    int n = snprintf(part, sizeof part, "%s.part", file);
    if (n < 0 || (size_t)n >= sizeof part || parent_of(file, parent,
                                                       sizeof parent)) {
        chain_restored_close(&r);
        return -ENAMETOOLONG;
    }
    bk_out o = { .fd = -1 };
    rc = chain_hasher_init(&o.sha);
    if (rc == 0 && EVP_DigestInit_ex(o.sha.ctx, o.sha.md, NULL) != 1)
        rc = -EIO;
    if (rc == 0) {
        o.fd = io->open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (o.fd < 0)
            rc = o.fd;
    }
    if (rc == 0)
        rc = write_backup(&r, &o, rep);
    if (rc == 0)
        rc = io->fsync(o.fd);
    if (o.fd >= 0)
        io->close(o.fd);
    if (rc == 0)
        rc = io->rename(part, file);
    if (rc == 0)
        rc = chain_io_fsync_dir(parent);
    else if (o.fd >= 0)
        io->unlink(part);
    chain_hasher_free(&o.sha);
    chain_restored_close(&r);
    return rc;
}

/* ------------------------------------------------------------ input */

typedef struct bk_in {
    int fd;
    uint64_t size, off;                /* file size, next byte to read */
    uint8_t *buf;                      /* BK_COPY */
    size_t have, pos;                  /* buffered bytes, consumed */
    chain_hasher sha;
    uint64_t hashed;                   /* bytes hashed so far */
} bk_in;

/* Copy the next `len` bytes of the file into p (hashing those before the
 * SHA-256 field); fewer than asked only at the end of the file. */
static int64_t in_read(bk_in *in, uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        if (in->pos == in->have) {
            uint64_t left = in->size - in->off;
            if (left == 0)
                break;
            size_t want = left < BK_COPY ? (size_t)left : BK_COPY;
            int64_t got = chain_io_pread_all(in->fd, in->buf, want, in->off);
            if (got < 0)
                return got;
            if (got == 0)
                break;
            in->have = (size_t)got;
            in->pos = 0;
            in->off += (uint64_t)got;
        }
        size_t n = in->have - in->pos;
        if (n > len - done)
            n = len - done;
        memcpy(p + done, in->buf + in->pos, n);
        in->pos += n;
        done += n;
    }
    uint64_t limit = in->size >= 32 ? in->size - 32 : 0;
    size_t hash_n = 0;
    if (in->hashed < limit)
        hash_n = limit - in->hashed < done ? (size_t)(limit - in->hashed)
                                           : done;
    if (hash_n && EVP_DigestUpdate(in->sha.ctx, p, hash_n) != 1)
        return -EIO;
    in->hashed += done;
    return (int64_t)done;
}

static uint64_t in_offset(const bk_in *in)
{
    return in->hashed;
}

/* What a backup holds, learned by checking it (pass 1). */
typedef struct bk_plan {
    uint64_t snap_len, snap_index;
    uint8_t snap_head[CHAIN_HASH_BYTES];
    uint64_t count, head;
    uint8_t head_hash[CHAIN_HASH_BYTES];
} bk_plan;

static int bk_damage(chain_damage *d, const char *file, uint64_t offset,
                     uint64_t index, const char *why)
{
    chain_damage_set(d, file, offset, index, why);
    return -EBADMSG;
}

/* Read and check the records after the snapshot; write them to the
 * segment files of `out_dir` when it is not NULL. */
typedef struct seg_out {
    const char *chain_dir;
    int fd;
    uint64_t size;
} seg_out;

static int seg_put(seg_out *so, const uint8_t *rec, uint32_t len,
                   uint64_t index)
{
    const chain_io_ops *io = chain_io();
    if (so->fd < 0 || so->size + len > CHAIN_SEGMENT_BYTES) {
        if (so->fd >= 0) {
            int rc = io->fdatasync(so->fd);
            io->close(so->fd);
            so->fd = -1;
            if (rc)
                return rc;
        }
        char path[BK_PATH];
        int n = snprintf(path, sizeof path, "%s/seg-%020llu.blk",
                         so->chain_dir, (unsigned long long)index);
        if (n < 0 || (size_t)n >= sizeof path)
            return -ENAMETOOLONG;
        so->fd = io->open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (so->fd < 0)
            return so->fd;
        so->size = 0;
    }
    int rc = chain_io_pwrite_all(so->fd, rec, len, so->size);
    if (rc == 0)
        so->size += len;
    return rc;
}

static int scan(const char *file, bk_in *in, bk_plan *plan, int snap_fd,
                seg_out *so, chain_damage *damage)
{
    uint8_t h[BK_HEADER];
    if (in->size < BK_HEADER + BK_TRAILER)
        return bk_damage(damage, file, 0, 0, "shorter than the smallest "
                         "backup");
    int64_t got = in_read(in, h, sizeof h);
    if (got < 0)
        return (int)got;
    if (memcmp(h, BK_MAGIC, 8) != 0)
        return bk_damage(damage, file, 0, 0, "not a backup file (bad magic)");
    if (chain_crc32(h, 28) != le_get32(h + 28))
        return bk_damage(damage, file, 0, 0, "bad header checksum");
    if (le_get32(h + 8) != BK_VERSION || le_get32(h + 12) != 0 ||
        le_get32(h + 24) != 0)
        return bk_damage(damage, file, 8, 0, "unknown backup version");
    plan->snap_len = le_get64(h + 16);
    if (plan->snap_len > in->size - BK_HEADER - BK_TRAILER)
        return bk_damage(damage, file, 16, 0, "snapshot longer than the "
                         "file");
    int rc = 0;
    uint8_t prev[CHAIN_HASH_BYTES];
    memset(prev, 0, sizeof prev);
    uint64_t next = 1;
    if (plan->snap_len) {
        snap_recv *r;
        rc = snap_recv_begin(plan->snap_len, NULL, snap_fd, &r);
        if (rc)
            return rc;
        uint8_t *buf = malloc(BK_COPY);
        rc = buf ? 0 : -ENOMEM;
        for (uint64_t off = 0; rc == 0 && off < plan->snap_len;) {
            uint64_t left = plan->snap_len - off;
            size_t want = left < BK_COPY ? (size_t)left : BK_COPY;
            got = in_read(in, buf, want);
            if (got <= 0) {
                rc = got < 0 ? (int)got : -EIO;
                break;
            }
            rc = snap_recv_chunk(r, off, buf, (size_t)got);
            off += (uint64_t)got;
        }
        free(buf);
        snap_info info;
        if (rc == 0)
            rc = snap_recv_finish(r, NULL, &info);
        if (rc == -EBADMSG) {
            *damage = *snap_recv_damage(r);
            snprintf(damage->path, sizeof damage->path, "%s", file);
            damage->offset += BK_HEADER;
        }
        snap_recv_free(r);
        if (rc)
            return rc;
        plan->snap_index = info.index;
        memcpy(plan->snap_head, info.head_hash, CHAIN_HASH_BYTES);
        memcpy(prev, info.head_hash, CHAIN_HASH_BYTES);
        next = info.index + 1;
    }
    chain_hasher hh;
    rc = chain_hasher_init(&hh);
    if (rc)
        return rc;
    uint8_t *rec = malloc(chain_record_size(PX_MAX_VALUE_BYTES));
    if (!rec) {
        chain_hasher_free(&hh);
        return -ENOMEM;
    }
    uint64_t end = in->size - BK_TRAILER;
    uint64_t count = 0;
    while (rc == 0 && in_offset(in) < end) {
        uint64_t at = in_offset(in);
        uint32_t hb = chain_record_header_bytes();
        if (end - at < hb) {
            rc = bk_damage(damage, file, at, next, "a block record cut short");
            break;
        }
        got = in_read(in, rec, hb);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        uint32_t len = chain_record_length(rec);
        if (len < hb || len > chain_record_size(PX_MAX_VALUE_BYTES) ||
            len > end - at) {
            rc = bk_damage(damage, file, at, next, "bad block record length");
            break;
        }
        got = in_read(in, rec + hb, len - hb);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        chain_record v;
        const char *why = NULL;
        uint8_t computed[CHAIN_HASH_BYTES];
        int pr = chain_record_parse(rec, len, &v, &why);
        if (pr || v.rec_len != len) {
            rc = bk_damage(damage, file, at, next, why ? why : "bad record");
            break;
        }
        if (v.index != next) {
            rc = bk_damage(damage, file, at, next, "index gap (block index "
                           "out of sequence)");
            break;
        }
        if (memcmp(v.prev, prev, CHAIN_HASH_BYTES) != 0) {
            rc = bk_damage(damage, file, at, next, count == 0 && plan->snap_len
                           ? "the first block does not continue from the "
                             "snapshot's head hash"
                           : "bad link (prev hash differs from previous "
                             "block)");
            break;
        }
        rc = chain_hasher_block(&hh, v.prev, v.index, v.time_ms, v.kind,
                                v.data, v.len, computed);
        if (rc)
            break;
        if (memcmp(computed, v.hash, CHAIN_HASH_BYTES) != 0) {
            rc = bk_damage(damage, file, at, next, "hash mismatch");
            break;
        }
        if (so)
            rc = seg_put(so, rec, len, v.index);
        memcpy(prev, v.hash, CHAIN_HASH_BYTES);
        next++;
        count++;
    }
    free(rec);
    chain_hasher_free(&hh);
    if (rc)
        return rc;
    uint8_t t[BK_TRAILER];
    got = in_read(in, t, sizeof t);
    if (got != BK_TRAILER)
        return got < 0 ? (int)got : bk_damage(damage, file, end, next,
                                              "trailer cut short");
    uint8_t sha[CHAIN_HASH_BYTES];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(in->sha.ctx, sha, &n) != 1 || n != CHAIN_HASH_BYTES)
        return -EIO;
    if (le_get64(t) != count || le_get64(t + 8) != next - 1 ||
        memcmp(t + 16, prev, CHAIN_HASH_BYTES) != 0)
        return bk_damage(damage, file, end, next - 1, "trailer differs from "
                         "the blocks (count, head index or head hash)");
    if (memcmp(sha, t + 48, CHAIN_HASH_BYTES) != 0)
        return bk_damage(damage, file, end + 48, next - 1, "SHA-256 of the "
                         "backup does not match");
    plan->count = count;
    plan->head = next - 1;
    memcpy(plan->head_hash, prev, CHAIN_HASH_BYTES);
    return 0;
}

static int in_open(const char *file, bk_in *in)
{
    memset(in, 0, sizeof *in);
    in->fd = chain_io()->open(file, O_RDONLY | O_CLOEXEC, 0);
    if (in->fd < 0)
        return in->fd;
    struct stat st;
    int rc = chain_io()->fstat(in->fd, &st);
    if (rc == 0) {
        in->size = (uint64_t)st.st_size;
        in->buf = malloc(BK_COPY);
        rc = in->buf ? chain_hasher_init(&in->sha) : -ENOMEM;
    }
    if (rc == 0 && EVP_DigestInit_ex(in->sha.ctx, in->sha.md, NULL) != 1)
        rc = -EIO;
    if (rc) {
        chain_io()->close(in->fd);
        free(in->buf);
        chain_hasher_free(&in->sha);
    }
    return rc;
}

static void in_close(bk_in *in)
{
    chain_io()->close(in->fd);
    free(in->buf);
    chain_hasher_free(&in->sha);
}

/* DIR absent (created) or empty: 0; else -ENOTEMPTY / -ENOTDIR. */
static int prepare_dir(const char *dir, bool *created)
{
    *created = false;
    int rc = chain_io()->mkdir(dir, 0700);
    if (rc == 0) {
        *created = true;
        return 0;
    }
    if (rc != -EEXIST)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            closedir(d);
            return -ENOTEMPTY;
        }
    closedir(d);
    return chmod(dir, 0700) == 0 ? 0 : -errno;
}

/* Undo what restore made in DIR (only the files it names). */
static void undo_dir(const char *dir, bool created)
{
    char path[BK_PATH];
    const char *subs[] = { "snap", "chain", "acceptor" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char f[BK_PATH + 300];
            if (de->d_name[0] == '.')
                continue;
            snprintf(f, sizeof f, "%s/%s", path, de->d_name);
            unlink(f);
        }
        closedir(d);
        rmdir(path);
    }
    if (created)
        rmdir(dir);
}

int backup_restore(const char *file, const char *dir, backup_report *rep,
                   chain_damage *damage)
{
    return backup_restore_ex(file, dir, false, rep, damage);
}

int backup_restore_ex(const char *file, const char *dir, bool new_cluster,
                      backup_report *rep, chain_damage *damage)
{
    chain_damage local;
    if (!damage)
        damage = &local;
    memset(damage, 0, sizeof *damage);
    bk_in in;
    bk_plan plan;
    memset(&plan, 0, sizeof plan);
    int rc = in_open(file, &in);
    if (rc)
        return rc;
    /* pass 1: check everything, write nothing (invariant 2) */
    rc = scan(file, &in, &plan, -1, NULL, damage);
    in_close(&in);
    if (rc)
        return rc;

    bool created;
    rc = prepare_dir(dir, &created);
    if (rc)
        return rc;
    char snap_dir[BK_PATH], chain_dir[BK_PATH], snap_path[BK_PATH + 40];
    snprintf(snap_dir, sizeof snap_dir, "%s/snap", dir);
    snprintf(chain_dir, sizeof chain_dir, "%s/chain", dir);
    int n = snprintf(snap_path, sizeof snap_path, "%s/snap-%020llu.pxs",
                     snap_dir, (unsigned long long)plan.snap_index);
    if (n < 0 || (size_t)n >= sizeof snap_path) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    const chain_io_ops *io = chain_io();
    rc = io->mkdir(chain_dir, 0700);
    if (rc == 0 && plan.snap_len)
        rc = io->mkdir(snap_dir, 0700);
    if (rc)
        goto fail;
    /* pass 2: the same reading, now writing the files */
    int snap_fd = -1;
    if (plan.snap_len) {
        snap_fd = io->open(snap_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                           0600);
        if (snap_fd < 0) {
            rc = snap_fd;
            goto fail;
        }
    }
    seg_out so = { .chain_dir = chain_dir, .fd = -1 };
    rc = in_open(file, &in);
    if (rc == 0) {
        bk_plan again;
        memset(&again, 0, sizeof again);
        rc = scan(file, &in, &again, snap_fd, &so, damage);
        in_close(&in);
        if (rc == 0 && (again.head != plan.head || again.count != plan.count))
            rc = -ESTALE;         /* the file changed between the passes */
    }
    if (rc == 0 && so.fd < 0) {
        /* no block after the snapshot: an empty segment to continue */
        char path[BK_PATH + 40];
        snprintf(path, sizeof path, "%s/seg-%020llu.blk", chain_dir,
                 (unsigned long long)plan.head + 1);
        so.fd = io->open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (so.fd < 0)
            rc = so.fd;
    }
    if (rc == 0 && so.fd >= 0)
        rc = io->fdatasync(so.fd);
    if (rc == 0 && snap_fd >= 0)
        rc = io->fdatasync(snap_fd);
    if (so.fd >= 0)
        io->close(so.fd);
    if (snap_fd >= 0)
        io->close(snap_fd);
    if (rc == 0)
        rc = chain_io_fsync_dir(chain_dir);
    if (rc == 0 && plan.snap_len)
        rc = chain_io_fsync_dir(snap_dir);
    if (rc == 0)
        rc = chain_io_fsync_dir(dir);
    if (rc)
        goto fail;
    /* an acceptor store that says what this directory is: the chain is
     * durable to its head, and the acceptor state is incomplete (whatever
     * the node promised or accepted after the backup is not here), so the
     * node recovers it from the other voters before it votes; a member of
     * a new cluster whose every member starts from this file has nothing
     * to recover (no member promised or accepted anything yet) */
    chain_mark mark = { .index = plan.head };
    memcpy(mark.hash, plan.head_hash, CHAIN_HASH_BYTES);
    acceptor_store *acc = NULL;
    acceptor_state ast;
    acceptor_open_report arep;
    rc = acceptor_open_salvage(dir, &acc, &ast, &arep);
    if (rc == 0)
        rc = acceptor_put_recovery(acc, !new_cluster);
    if (rc == 0 && plan.head > 0)
        rc = acceptor_mark(acc, plan.head, plan.head_hash);
    if (rc == 0)
        rc = acceptor_sync(acc);
    acceptor_close(acc);
    if (rc)
        goto fail;
    /* what a node will open */
    chain_restored r;
    chain_restore_report rrep;
    rc = chain_verify_all(dir, &mark, &r, &rrep, damage);
    if (rc)
        goto fail;
    if (r.index != plan.head ||
        memcmp(r.head_hash, plan.head_hash, CHAIN_HASH_BYTES) != 0)
        rc = -EIO;
    chain_restored_close(&r);
    if (rc)
        goto fail;
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->has_snap = plan.snap_len != 0;
        rep->snap_index = plan.snap_index;
        rep->first_block = plan.count ? plan.snap_index + 1 : 0;
        rep->head = plan.head;
        memcpy(rep->head_hash, plan.head_hash, CHAIN_HASH_BYTES);
        rep->bytes = in.size;
    }
    return 0;
fail:
    undo_dir(dir, created);
    return rc;
}

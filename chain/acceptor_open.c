/*
 * acceptor_open.c - owns opening the acceptor store: reading and
 * replaying the log (a torn last write cut, damage reported with file
 * and offset), creating a new preallocated log, keeping a damaged one
 * aside (acceptor_open_salvage), and the offline verification of
 * paxosctl verify.
 */
#include "acceptor_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replay buf[0, size) into memory.  0 with *end = the end of the last
 * whole record and *torn set when a torn write follows it, or -EBADMSG
 * with *damage (memory then holds the records before the damage). */
static int replay(acceptor_store *a, const uint8_t *buf, uint64_t size,
                  uint64_t *end, bool *torn, chain_damage *damage)
{
    uint64_t off = 0;
    *torn = false;
    if (size == 0) {
        chain_damage_set(damage, a->path, 0, 0,
                         "empty acceptor log (one is never created empty)");
        return -EBADMSG;
    }
    /* Bounded: every record is at least ACC_FORGET_BYTES long. */
    while (off < size) {
        acc_rec r;
        const char *reason;
        int st = acc_rec_parse(buf + off, size - off, &r, &reason);
        if (st != ACC_OK) {
            if (chain_all_zero(buf + off, (size_t)(size - off)))
                break;   /* the end of the log */
            if (st == ACC_BAD_PAST_END || st == ACC_BAD_SHORT) {
                chain_damage_set(damage, a->path, off, 0,
                                 "record extends past the end of the file "
                                 "(the log was truncated)");
                return -EBADMSG;
            }
            if (!acc_valid_record_after(buf, off + 1, size) &&
                acc_looks_torn(buf, off, size,
                           st == ACC_BAD_BODY ? r.rec_len : 0)) {
                *torn = true;
                break;
            }
            chain_damage_set(damage, a->path, off, 0, reason);
            return -EBADMSG;
        }
        int rc = acc_rec_apply(a, &r);
        if (rc < 0)
            return rc;
        off += r.rec_len;
    }
    *end = off;
    if (off == size) {
        chain_damage_set(damage, a->path, off, 0,
                         "the log ends right after its last record without "
                         "the zero space that always follows it (truncated)");
        return -EBADMSG;
    }
    return 0;
}

static int read_log(int fd, uint8_t **buf_out, uint64_t *size_out,
                    const char *path, chain_damage *damage)
{
    struct stat st;
    int rc = chain_io()->fstat(fd, &st);
    if (rc)
        return rc;
    uint64_t size = (uint64_t)st.st_size;
    if (size > ACC_MAX_FILE_BYTES) {
        chain_damage_set(damage, path, 0, 0, "acceptor log too large");
        return -EBADMSG;
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return -ENOMEM;
    int64_t got = chain_io_pread_all(fd, buf, (size_t)size, 0);
    if (got < 0) {
        free(buf);
        return (int)got;
    }
    *buf_out = buf;
    *size_out = (uint64_t)got;
    return 0;
}

static int load_log(acceptor_store *a, acceptor_open_report *rep,
                    chain_damage *damage)
{
    uint8_t *buf = NULL;
    uint64_t size = 0;
    bool torn;
    int rc = read_log(a->fd, &buf, &size, a->path, damage);
    if (rc)
        return rc;
    rc = replay(a, buf, size, &a->end, &torn, damage);
    if (rc)
        goto out_free;
    a->capacity = size;
    if (torn) {
        /* zero it so the next record lands on clean space */
        rc = acc_write_zeros(a->fd, a->end, size);
        if (!rc)
            rc = chain_io()->fdatasync(a->fd);
        if (!rc && rep) {
            rep->torn_cut = true;
            snprintf(rep->torn_path, sizeof rep->torn_path, "%s", a->path);
            rep->torn_offset = a->end;
            rep->torn_bytes = acc_used_end(buf, size) - a->end;
        }
    }
out_free:
    free(buf);
    return rc;
}

static uint64_t default_log_bytes = ACCEPTOR_LOG_BYTES;

void acceptor_set_default_log_bytes(uint64_t bytes)
{
    default_log_bytes = bytes == 0 ? ACCEPTOR_LOG_BYTES
                                   : bytes < 1024 ? 1024 : bytes;
}

static int store_new(const char *dir, acceptor_store **out)
{
    acceptor_store *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->fd = -1;
    a->log_bytes = default_log_bytes;
    int n1 = snprintf(a->dir, sizeof a->dir, "%s/acceptor", dir);
    int n2 = snprintf(a->path, sizeof a->path, "%s/acceptor/log", dir);
    int n3 = snprintf(a->tmp_path, sizeof a->tmp_path, "%s/acceptor/log.tmp",
                      dir);
    int n4 = snprintf(a->kept_path, sizeof a->kept_path,
                      "%s/acceptor/log.damaged", dir);
    if (n1 < 0 || n2 < 0 || n3 < 0 || n4 < 0 ||
        (size_t)n4 >= sizeof a->kept_path) {
        free(a);
        return -ENAMETOOLONG;
    }
    *out = a;
    return 0;
}

/* A damaged log (invariant 4): keep it as log.damaged for whoever wants to
 * look at it, and go on with a new log holding what the records before the
 * damage said, marked recovering.  The rename is durable before the new
 * log is written: a failure or crash in between leaves no log beside
 * log.damaged, which the next open takes for this same damage
 * (invariant 9), never for a new node. */
static int salvage(acceptor_store *a, acceptor_open_report *rep)
{
    const chain_io_ops *io = chain_io();
    if (a->fd >= 0)
        io->close(a->fd);
    a->fd = -1;
    int rc = io->rename(a->path, a->kept_path);
    if (rc == 0)
        rc = chain_io_fsync_dir(a->dir);
    if (rc)
        return rc;
    a->info.recovering = true;
    rc = acc_roll_log(a);
    if (rc)
        return rc;
    rep->lost = true;
    snprintf(rep->kept_path, sizeof rep->kept_path, "%s", a->kept_path);
    return 0;
}

/* 1 when log.damaged exists, 0 when not, or -errno. */
static int kept_log_exists(const acceptor_store *a)
{
    const chain_io_ops *io = chain_io();
    int fd = io->open(a->kept_path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    io->close(fd);
    return 1;
}

static int open_store(const char *dir, acceptor_store **out,
                      acceptor_state *st, acceptor_open_report *rep,
                      chain_damage *damage, bool salvage_damage)
{
    const chain_io_ops *io = chain_io();
    acceptor_open_report ignored;
    acceptor_store *a = NULL;
    int rc;

    if (!rep)
        rep = &ignored;
    memset(rep, 0, sizeof *rep);
    if (damage)
        memset(damage, 0, sizeof *damage);
    if (!dir || !out)
        return -EINVAL;
    rc = store_new(dir, &a);
    if (rc)
        return rc;
    rc = io->mkdir(a->dir, 0700);
    if (rc == 0)
        rc = chain_io_fsync_dir(dir);
    else if (rc == -EEXIST)
        rc = 0;
    if (rc)
        goto out_free;
    rc = io->unlink(a->tmp_path);   /* a roll that did not finish */
    if (rc && rc != -ENOENT)
        goto out_free;
    a->fd = io->open(a->path, O_RDWR, 0);
    if (a->fd == -ENOENT && (rc = kept_log_exists(a)) != 0) {
        a->fd = -1;
        if (rc < 0)
            goto out_free;
        /* Invariant 9: a salvage stopped between keeping the damaged
         * log aside and putting the new one in place.  Its state is
         * lost, not new: report it as damage found again. */
        chain_damage d;
        memset(&d, 0, sizeof d);
        chain_damage_set(&d, a->path, 0, 0,
                         "the log is missing beside log.damaged (a start "
                         "that kept a damaged log aside stopped before "
                         "its new log was in place)");
        if (damage)
            *damage = d;
        rep->damage = d;
        rc = -EBADMSG;
        if (salvage_damage) {
            a->info.recovering = true;
            rc = acc_roll_log(a);
            if (rc == 0) {
                rep->lost = true;
                snprintf(rep->kept_path, sizeof rep->kept_path, "%s",
                         a->kept_path);
            }
        }
    } else if (a->fd == -ENOENT) {
        a->fd = -1;
        rep->created = true;
        rc = acc_roll_log(a);         /* a new, empty, preallocated log */
    } else if (a->fd < 0) {
        rc = a->fd;
        a->fd = -1;
    } else {
        chain_damage d;
        rc = load_log(a, rep, &d);
        if (rc == -EBADMSG) {
            if (damage)
                *damage = d;
            rep->damage = d;
            if (salvage_damage)
                rc = salvage(a, rep);
        }
    }
    if (rc)
        goto out_free;
    acc_state_out(a, st);
    *out = a;
    return 0;
out_free:
    acceptor_close(a);
    return rc;
}

int acceptor_open(const char *dir, acceptor_store **out, acceptor_state *st,
                  chain_damage *damage)
{
    return open_store(dir, out, st, NULL, damage, false);
}

int acceptor_open_salvage(const char *dir, acceptor_store **out,
                          acceptor_state *st, acceptor_open_report *rep)
{
    return open_store(dir, out, st, rep, NULL, true);
}

int acceptor_verify_dir(const char *dir, acceptor_verify *v)
{
    const chain_io_ops *io = chain_io();
    acceptor_store *a = NULL;
    uint8_t *buf = NULL;
    uint64_t size = 0;
    bool torn = false;

    memset(v, 0, sizeof *v);
    int rc = store_new(dir, &a);
    if (rc)
        return rc;
    snprintf(v->path, sizeof v->path, "%s", a->path);
    int fd = io->open(a->path, O_RDONLY, 0);
    if (fd == -ENOENT) {
        v->missing = true;
        rc = 0;
        goto out;
    }
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    rc = read_log(fd, &buf, &size, a->path, &v->damage);
    io->close(fd);
    if (rc)
        goto out;
    rc = replay(a, buf, size, &a->end, &torn, &v->damage);
    if (rc)
        goto out;
    if (torn) {
        v->torn_offset = a->end;
        v->torn_bytes = acc_used_end(buf, size) - a->end;
    }
out:
    if (a) {
        v->promise = a->promise;
        v->n_accepts = a->n_accepts;
        if (a->n_accepts) {
            v->first_slot = a->accepts[0].slot;
            v->last_slot = a->accepts[a->n_accepts - 1].slot;
        }
        v->info = a->info;
    }
    free(buf);
    acceptor_close(a);
    return rc;
}

/*
 * stream.c - tailing the chain: .chain/stream and .chain/since/<index>.
 *
 *   .chain/stream          every block committed after the open, in
 *                          order, as it commits
 *   .chain/since/<index>   block <index> and every one after it, then
 *                          on as they commit (since/0: from the oldest
 *                          block the chain still has)
 *
 * Each block is its .chain/<n> text followed by one empty line.  A read
 * that finds no committed block after what it delivered waits (the file
 * never ends: `cat` and `tail -f` follow the chain); a signal ends the
 * wait with EINTR.  poll() reports POLLIN once a block is there to read.
 *
 * Blocks compacted away after a snapshot cannot be read: opening
 * since/<index> at or below the compacted base, or reading a stream whose
 * next block was compacted away meanwhile (a reader more than a snapshot
 * behind), fails with ERANGE; the oldest index still available is in the
 * xattr user.paxos.oldest of .chain, .chain/stream and .chain/since.
 *
 * Invariants:
 *  1. Memory per reader is one rendered block (the one being delivered),
 *     read from the chain by index when the previous one is used up:
 *     never a buffer of what was committed meanwhile, however slow the
 *     reader.
 *  2. A reader gets every block from its start on, each once, in index
 *     order, never skipping one: `next` advances by one per block
 *     rendered, and a block that cannot be rendered is an error, not a
 *     gap.
 *  3. At most one read of a handle waits (the kernel serializes reads of
 *     a file description; a second one would be answered at once with
 *     EAGAIN rather than parked); every parked read is answered once:
 *     with a block, EINTR (interrupt), or an error.
 */
#include "fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XA_OLDEST "user.paxos.oldest"

static uint64_t chain_base(fs *f)
{
    return f->be.chain_base ? f->be.chain_base(f->be.ctx) : 0;
}

bool fs_stream_ino(uint64_t ino)
{
    return ino == FS_INO_SINCE || ino == FS_INO_STREAM ||
           ino >= FS_INO_SINCE_BASE;
}

static void fill_attr(fs *f, uint64_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = ino == FS_INO_SINCE ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = ino == FS_INO_SINCE ? 2 : 1;
    st->st_uid = f->uid;
    st->st_gid = f->gid;
    st->st_blksize = 4096;
    fs_set_times_ms(st, f->mounted_ms);
}

/* .chain/since/<digits>: the index (0: the oldest); false if not digits */
static bool parse_index(const char *name, uint64_t *out)
{
    size_t n = strlen(name);
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t next = v * 10 + (uint64_t)(name[i] - '0');
        if (next < v)
            return false;
        v = next;
    }
    if (v >= FS_SINCE_MAX)
        return false;
    *out = v;
    return true;
}

bool fs_stream_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fs *f = fs_of(req);
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.generation = 1;
    uint64_t index = 0;
    if (parent == FS_INO_CHAIN && strcmp(name, FS_CHAIN_STREAM) == 0)
        e.ino = FS_INO_STREAM;
    else if (parent == FS_INO_CHAIN && strcmp(name, FS_CHAIN_SINCE) == 0)
        e.ino = FS_INO_SINCE;
    else if (parent == FS_INO_SINCE && parse_index(name, &index))
        e.ino = FS_INO_SINCE_BASE + index;
    else if (parent == FS_INO_SINCE)
        e.ino = 0;
    else
        return false;
    if (!e.ino) {
        fuse_reply_err(req, ENOENT);
        return true;
    }
    fill_attr(f, e.ino, &e.attr);
    e.attr_timeout = e.entry_timeout = 3600.0;   /* never change */
    fuse_reply_entry(req, &e);
    return true;
}

void fs_stream_getattr(fuse_req_t req, fuse_ino_t ino)
{
    struct stat st;
    fill_attr(fs_of(req), ino, &st);
    fuse_reply_attr(req, &st, 3600.0);
}

void fs_stream_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fs *f = fs_of(req);
    if (ino == FS_INO_SINCE) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    uint64_t base = chain_base(f);
    uint64_t next;
    if (ino == FS_INO_STREAM) {
        next = f->be.chain_head(f->be.ctx) + 1;
    } else {
        next = ino - FS_INO_SINCE_BASE;
        if (next == 0)
            next = base + 1;
        else if (next <= base) {
            /* compacted away: user.paxos.oldest says from where */
            fuse_reply_err(req, ERANGE);
            return;
        }
    }
    fs_handle *h = fs_handle_new(f, FS_H_STREAM);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->stream_next = next;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;
    fi->nonseekable = 1;
    if (fuse_reply_open(req, fi) != 0)
        fs_handle_unref(h);
}

/* Make h->text hold the next block if it has none left to deliver:
 * 0 (a block is there), EAGAIN (none committed yet), or an errno. */
static int load_next(fs *f, fs_handle *h)
{
    if (h->stream_off < h->text_len)
        return 0;
    free(h->text);
    h->text = NULL;
    h->text_len = h->stream_off = 0;
    if (h->stream_next > f->be.chain_head(f->be.ctx))
        return EAGAIN;
    if (h->stream_next <= chain_base(f))
        return ERANGE;                  /* compacted before it was read */
    char *text = NULL;
    uint32_t len = 0;
    int rc = f->be.block_text(f->be.ctx, h->stream_next, &text, &len);
    if (rc < 0) {
        /* compacted between the check and the read, or damaged: never a
         * gap (invariant 2) */
        return rc == -ENOENT && h->stream_next <= chain_base(f) ? ERANGE
                                                                 : EIO;
    }
    char *t = realloc(text, (size_t)len + 1);
    if (!t) {
        free(text);
        return ENOMEM;
    }
    t[len] = '\n';                      /* an empty line after each block */
    h->text = t;
    h->text_len = (size_t)len + 1;
    h->stream_next++;
    return 0;
}

/* Answer `req` from h; false if nothing is there yet (EAGAIN). */
static bool serve(fs *f, fs_handle *h, fuse_req_t req, size_t size)
{
    int rc = load_next(f, h);
    if (rc == EAGAIN)
        return false;
    if (rc) {
        fuse_reply_err(req, rc);
        return true;
    }
    size_t n = h->text_len - h->stream_off;
    if (n > size)
        n = size;
    fuse_reply_buf(req, h->text + h->stream_off, n);
    h->stream_off += n;
    return true;
}

static void unpark(fs *f, fs_handle *h)
{
    h->stream_req = NULL;
    if (h->stream_prev)
        h->stream_prev->stream_nextp = h->stream_nextp;
    else
        f->streams = h->stream_nextp;
    if (h->stream_nextp)
        h->stream_nextp->stream_prev = h->stream_prev;
    h->stream_prev = h->stream_nextp = NULL;
    fs_handle_unref(h);                 /* the parked read's reference */
}

static void interrupted(fuse_req_t req, void *arg)
{
    fs_handle *h = arg;
    if (h->stream_req != req)
        return;
    unpark(h->owner, h);
    fuse_reply_err(req, EINTR);
}

void fs_stream_read(fuse_req_t req, fs_handle *h, size_t size)
{
    fs *f = fs_of(req);
    if (h->stream_req) {
        fuse_reply_err(req, EAGAIN);    /* invariant 3 */
        return;
    }
    if (serve(f, h, req, size))
        return;
    /* park until the chain grows (fs_chain_grew) or a signal */
    h->refs++;
    h->stream_req = req;
    h->stream_size = size;
    h->stream_nextp = f->streams;
    h->stream_prev = NULL;
    if (f->streams)
        f->streams->stream_prev = h;
    f->streams = h;
    fuse_req_interrupt_func(req, interrupted, h);
}

void fs_chain_grew(fs *f)
{
    if (!f)
        return;
    fs_handle *next;
    for (fs_handle *h = f->streams; h; h = next) {
        next = h->stream_nextp;
        fuse_req_t req = h->stream_req;
        if (load_next(f, h) == EAGAIN)
            continue;
        h->refs++;                      /* across unpark */
        unpark(f, h);
        serve(f, h, req, h->stream_size);
        fs_handle_unref(h);
    }
    fs_poll_wake_streams(f);
}

/* Answer every parked read at unmount (before the session goes). */
void fs_stream_end_all(fs *f)
{
    while (f->streams) {
        fs_handle *h = f->streams;
        fuse_req_t req = h->stream_req;
        unpark(f, h);
        fuse_reply_buf(req, NULL, 0);
    }
}

unsigned fs_stream_mask(fs *f, fs_handle *h)
{
    int rc = load_next(f, h);
    return rc == EAGAIN ? 0 : POLLIN | POLLRDNORM;
}

/* user.paxos.oldest, user.paxos.next: true if answered */
bool fs_stream_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                        size_t size)
{
    fs *f = fs_of(req);
    if (ino != FS_INO_CHAIN && ino != FS_INO_SINCE && ino != FS_INO_STREAM)
        return false;
    if (strcmp(name, XA_OLDEST) != 0) {
        fuse_reply_err(req, ENODATA);
        return true;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRIu64, chain_base(f) + 1);
    if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else if (size < (size_t)n)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    return true;
}

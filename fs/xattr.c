/*
 * xattr.c - the extended attributes of keys and directories: what the
 * replicated log knows about a key, and a compare-and-swap on its next
 * commit.
 *
 *   user.paxos.revision  (read-only) index of the block that last changed
 *                        the key (its version, chain/kv.h), decimal
 *   user.paxos.version   (read-only) how many committed changes made the
 *                        key's value since the key was created (1 after
 *                        the creating write; each write, append,
 *                        chmod/chown/utimes and rename onto it adds 1;
 *                        chain/kv.h kv_value.changes), decimal; ENODATA
 *                        from a backend that does not count them
 *   user.paxos.hash      (read-only) hex SHA-256 hash of the chain at that
 *                        block (its "hash:" line in .chain/<revision>);
 *                        ENODATA once that block was compacted away
 *   user.paxos.expect    (writable, on a file open for writing on this
 *                        mount) a revision: the next commit of the open
 *                        file commits only if the key is still at that
 *                        revision (COND VERSION, decided in the log), else
 *                        it fails with ECANCELED and commits nothing; the
 *                        expectation is used up by that commit
 *
 * Invariants:
 *  1. Reading a paxos attribute is a read: it waits for a read point, so
 *     the revision is at least that of every write that returned before
 *     (fs.h, semantics 3).
 *  2. A key not committed yet (created here, never written) has no
 *     revision: ENODATA.  Other names: ENODATA to read, ENOTSUP to write
 *     (there is nowhere to store them); the read-only ones EPERM to write.
 */
#include "fs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XA_REVISION "user.paxos.revision"
#define XA_HASH "user.paxos.hash"
#define XA_VERSION "user.paxos.version"
#define XA_EXPECT "user.paxos.expect"

static void reply_value(fuse_req_t req, const char *v, size_t len,
                        size_t size)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, v, len);
}

/* The hash of block `index`, hex, from its rendering: 0 or a positive
 * errno (ENODATA: the block is not in the chain any more). */
static int block_hash(fs *f, uint64_t index, char out[65])
{
    char *text = NULL;
    uint32_t len = 0;
    int rc = f->be.block_text(f->be.ctx, index, &text, &len);
    if (rc < 0)
        return rc == -ENOENT ? ENODATA : -rc;
    const char *p = NULL;
    for (const char *q = text; q && q < text + len; ) {
        if (strncmp(q, "hash: ", 6) == 0) {
            p = q + 6;
            break;
        }
        q = memchr(q, '\n', (size_t)(text + len - q));
        if (q)
            q++;
    }
    rc = EIO;
    if (p && p + 64 <= text + len) {
        memcpy(out, p, 64);
        out[64] = '\0';
        rc = 0;
    }
    free(text);
    return rc;
}

static void getxattr_then(fs_wait *w, int result)
{
    fs *f = w->f;
    if (result < 0) {
        fs_reply_wait_err(w, result);
        return;
    }
    const fs_meta *m = fs_committed(w->in);
    char buf[80];
    int n = 0;
    if (!m) {
        fuse_reply_err(w->req, fs_key_exists(w->in, NULL) ? ENODATA : ENOENT);
    } else if (strcmp(w->name, XA_REVISION) == 0) {
        n = snprintf(buf, sizeof buf, "%" PRIu64, m->version);
        reply_value(w->req, buf, (size_t)n, w->size);
    } else if (strcmp(w->name, XA_VERSION) == 0) {
        if (!m->changes) {
            fuse_reply_err(w->req, ENODATA);
        } else {
            n = snprintf(buf, sizeof buf, "%" PRIu64, m->changes);
            reply_value(w->req, buf, (size_t)n, w->size);
        }
    } else {
        int rc = block_hash(f, m->version, buf);
        if (rc)
            fuse_reply_err(w->req, rc);
        else
            reply_value(w->req, buf, 64, w->size);
    }
    fs_wait_free(w);
}

void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                 size_t size)
{
    fs *f = fs_of(req);
    if (fs_stream_getxattr(req, ino, name, size))
        return;
    fs_inode *in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
                   ? fs_inode_by_ino(f->inodes, ino) : NULL;
    if (!in) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    if (strcmp(name, XA_EXPECT) == 0) {
        char buf[32];
        if (!in->of || !in->of->expect) {
            fuse_reply_err(req, ENODATA);
            return;
        }
        int n = snprintf(buf, sizeof buf, "%" PRIu64, in->of->expect);
        reply_value(req, buf, (size_t)n, size);
        return;
    }
    if (strcmp(name, XA_REVISION) != 0 && strcmp(name, XA_HASH) != 0 &&
        strcmp(name, XA_VERSION) != 0) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    fs_wait *w = fs_wait_new(f, req, getxattr_then);
    if (!w || !(w->name = strdup(name))) {
        if (w)
            fs_wait_free(w);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    w->size = size;
    fs_wait_hold(w, in, NULL);
    fs_wait_read_file(w, 0);        /* invariant 1 */
}

void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    fs *f = fs_of(req);
    fs_inode *in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
                   ? fs_inode_by_ino(f->inodes, ino) : NULL;
    static const char names[] = XA_REVISION "\0" XA_HASH "\0"
                                XA_VERSION "\0";
    static const char with_expect[] = XA_REVISION "\0" XA_HASH "\0"
                                      XA_VERSION "\0" XA_EXPECT "\0";
    if (!in)
        reply_value(req, "", 0, size);
    else if (in->of && in->of->expect)
        reply_value(req, with_expect, sizeof with_expect - 1, size);
    else
        reply_value(req, names, sizeof names - 1, size);
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                 const char *value, size_t size, int flags)
{
    (void)flags;
    fs *f = fs_of(req);
    fs_inode *in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
                   ? fs_inode_by_ino(f->inodes, ino) : NULL;
    if (strcmp(name, XA_REVISION) == 0 || strcmp(name, XA_HASH) == 0 ||
        strcmp(name, XA_VERSION) == 0) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (strcmp(name, XA_EXPECT) != 0 || !in) {
        fuse_reply_err(req, ENOTSUP);
        return;
    }
    /* a decimal revision, nothing else */
    uint64_t rev = 0;
    bool ok = size > 0 && size <= 20;
    for (size_t i = 0; ok && i < size; i++) {
        if (value[i] < '0' || value[i] > '9' ||
            rev > (UINT64_MAX - (uint64_t)(value[i] - '0')) / 10)
            ok = false;
        else
            rev = rev * 10 + (uint64_t)(value[i] - '0');
    }
    if (!ok || rev == 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (!in->of) {
        fuse_reply_err(req, EBADF);     /* not open for writing here */
        return;
    }
    in->of->expect = rev;
    fuse_reply_err(req, 0);
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fs *f = fs_of(req);
    fs_inode *in = ino >= FS_INO_FIRST_KEY && !fs_is_block_ino(ino)
                   ? fs_inode_by_ino(f->inodes, ino) : NULL;
    if (strcmp(name, XA_REVISION) == 0 || strcmp(name, XA_HASH) == 0 ||
        strcmp(name, XA_VERSION) == 0) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (strcmp(name, XA_EXPECT) != 0 || !in || !in->of || !in->of->expect) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    in->of->expect = 0;
    fuse_reply_err(req, 0);
}

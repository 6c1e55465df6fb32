/*
 * state.c - what the mount knows of the committed state, without holding
 * it: which file each inode stands for and that file's metadata, kept in
 * line by the backend's ordered stream of changed keys (fs_key_changed,
 * fs.h rule B2) and by what reads deliver (fs_resolve).
 *
 * Invariants:
 *  1. An inode stands for one file (inode.h): it follows its file when an
 *     entry renames it, and is orphaned when its name is removed or given
 *     to another file (fs_reconcile, run for every key an entry changes).
 *  2. The inode of a committed file that is not an orphan knows its
 *     file's current metadata (seen, with seen.ident == ident): every
 *     change of its key reaches fs_reconcile before anything that could
 *     read it (rule B2), so no state is needed to answer "does this file
 *     exist, how long is it" (fs_committed).
 *  3. A file created on this mount and not committed yet (no identity, a
 *     working copy) keeps its name on this mount until its first commit,
 *     unlink or rename: the applied state does not decide for it; what
 *     its key holds is noted (seen), and once its first commit is applied
 *     that is the identity of its file (ofile.c).
 *  4. An inode whose file exists keeps its number for the life of the
 *     mount (fs_release_inode frees only inodes of files that are gone).
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/check.h"

const fs_meta *fs_committed(const fs_inode *in)
{
    if (!in->ident || in->orphan)
        return NULL;
    CHECK(in->seen.ident == in->ident);   /* invariant 2 */
    return &in->seen;
}

/* A file created on this mount and not committed yet: its name belongs to
 * this mount's view until its first commit, unlink or rename. */
bool fs_is_pending(const fs_inode *in)
{
    return in && !in->ident && in->of;
}

void fs_reconcile(fs *f, const char *key, size_t key_len, const fs_meta *now)
{
    fs_inode *in = fs_inode_by_key(f->inodes, key, key_len);
    if (fs_is_pending(in)) {
        in->seen = *now;     /* invariant 3 */
        return;
    }
    if (in && (!now->ident || now->ident != in->ident)) {
        /* its file left the name: removed, renamed away or replaced */
        fs_inode_orphan(f->inodes, in);
        if (fs_is_dir_inode(in) || (key_len && key[key_len - 1] == '/'))
            in->alias_seq = fs_notice_dir_moved(f, key, key_len);
        else
            fs_notice_entry(f, key, key_len);
        fs_poll_wake(f, in);
        fs_release_inode(f, in);
        in = NULL;
    }
    if (in) {
        in->seen = *now;
        fs_notice_inode(f, in->ino);       /* its content changed */
        fs_poll_wake(f, in);
        return;
    }
    fs_inode *moved = fs_inode_by_ident(f->inodes, now->ident);
    if (!moved)
        return;
    /* renamed: the inode follows its file */
    if (!moved->orphan) {
        if (fs_is_dir_inode(moved))
            moved->alias_seq = fs_notice_dir_moved(f, moved->key,
                                                   moved->key_len);
        else
            fs_notice_entry(f, moved->key, moved->key_len);
        fs_inode_orphan(f->inodes, moved);
    }
    if (fs_inode_rekey(f->inodes, moved, key, key_len) < 0) {
        moved->lost = true;
        fs_release_inode(f, moved);
        return;
    }
    moved->lost = false;
    moved->seen = *now;
    fs_notice_entry(f, key, key_len);
    fs_poll_wake(f, moved);
}

fs_inode *fs_resolve(fs *f, const char *name, const fs_meta *now, int *err)
{
    size_t len = strlen(name);
    fs_reconcile(f, name, len, now);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    if (in)
        return in;
    if (!now->ident) {
        *err = ENOENT;
        return NULL;
    }
    in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        *err = ENOMEM;
        return NULL;
    }
    fs_inode_set_ident(f->inodes, in, now->ident);
    in->seen = *now;
    return in;
}

void fs_release_inode(fs *f, fs_inode *in)
{
    if (in->nlookup > 0 || in->open_count > 0 || in->of)
        return;
    if (fs_committed(in))
        return;
    fs_inode_release_if_unused(f->inodes, in);
}

void fs_key_changed(fs *f, const char *key, size_t key_len,
                    const fs_meta *now)
{
    if (f)
        fs_reconcile(f, key, key_len, now);
}

struct each_key {
    void (*fn)(void *arg, const char *key, size_t key_len);
    void *arg;
};

static void each_key_one(fs_inode *in, void *arg)
{
    struct each_key *e = arg;
    if (!in->orphan && in->key_len)
        e->fn(e->arg, in->key, in->key_len);
}

void fs_each_key(fs *f, void (*fn)(void *arg, const char *key,
                                   size_t key_len), void *arg)
{
    struct each_key e = { fn, arg };
    if (f)
        fs_inode_each(f->inodes, each_key_one, &e);
}

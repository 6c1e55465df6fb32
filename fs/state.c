/*
 * state.c - what the mount knows of the committed state: which file each
 * inode stands for, kept in line with the applied state as entries change
 * keys (fs_key_changed, fs_reconcile), and finding the file a name stands
 * for.
 *
 * Invariants:
 *  1. An inode stands for one file (inode.h): it follows its file when an
 *     entry renames it, and is orphaned when its name is removed or given
 *     to another file (fs_reconcile, run for every key an entry changes).
 *  2. A file created on this mount and not committed yet (no identity, a
 *     working copy) keeps its name on this mount until its first commit,
 *     unlink or rename: the applied state does not decide for it.
 *  3. An inode whose file exists keeps its number for the life of the
 *     mount (fs_release_inode frees only inodes of files that are gone).
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const kv *fs_state(fs *f)
{
    return f->be.state(f->be.ctx);
}

const kv_value *fs_committed(fs *f, const fs_inode *in)
{
    if (!in->ident || in->orphan)
        return NULL;
    const kv_value *v = kv_get(fs_state(f), in->key, in->key_len);
    return v && v->ident == in->ident ? v : NULL;
}

/* A file created on this mount and not committed yet: its name belongs to
 * this mount's view until its first commit, unlink or rename. */
bool fs_is_pending(const fs_inode *in)
{
    return in && !in->ident && in->of;
}

void fs_reconcile(fs *f, const char *key, size_t key_len)
{
    const kv_value *v = kv_get(fs_state(f), key, key_len);
    fs_inode *in = fs_inode_by_key(f->inodes, key, key_len);
    if (fs_is_pending(in))
        return;
    if (in && (!v || v->ident != in->ident)) {
        /* its file left the name: removed, renamed away or replaced */
        fs_inode_orphan(f->inodes, in);
        fs_notice_entry(f, key, key_len);
        fs_release_inode(f, in);
        in = NULL;
    }
    if (in) {
        fs_notice_inode(f, in->ino);       /* its content changed */
        return;
    }
    fs_inode *moved = v ? fs_inode_by_ident(f->inodes, v->ident) : NULL;
    if (!moved)
        return;
    /* renamed here: the inode follows its file */
    if (!moved->orphan) {
        fs_notice_entry(f, moved->key, moved->key_len);
        fs_inode_orphan(f->inodes, moved);
    }
    if (fs_inode_rekey(f->inodes, moved, key, key_len) < 0)
        fs_release_inode(f, moved);
    fs_notice_entry(f, key, key_len);
}

struct find_ident {
    uint64_t ident;
    char *key;
    size_t key_len;
};

static int find_ident_visit(void *arg, const char *key, size_t key_len,
                            const kv_value *v)
{
    struct find_ident *fi = arg;
    if (v->ident != fi->ident)
        return 0;
    fi->key = strndup(key, key_len);
    fi->key_len = key_len;
    return fi->key ? 1 : -ENOMEM;
}

int fs_find_ident(fs *f, uint64_t ident, char **key, size_t *key_len)
{
    struct find_ident fi = { .ident = ident };
    int rc = kv_scan(fs_state(f), "", 0, find_ident_visit, &fi);
    if (rc < 0)
        return rc;
    if (!fi.key)
        return -ENOENT;
    *key = fi.key;
    *key_len = fi.key_len;
    return 0;
}

/* The inode of the file `name` names on this mount after a read point,
 * created if needed; NULL with *err set (ENOENT, ENOMEM). */
fs_inode *fs_resolve(fs *f, const char *name, int *err)
{
    size_t len = strlen(name);
    fs_reconcile(f, name, len);
    fs_inode *in = fs_inode_by_key(f->inodes, name, len);
    if (in)
        return in;
    const kv_value *v = kv_get(fs_state(f), name, len);
    if (!v) {
        *err = ENOENT;
        return NULL;
    }
    in = fs_inode_get_or_add(f->inodes, name, len);
    if (!in) {
        *err = ENOMEM;
        return NULL;
    }
    fs_inode_set_ident(f->inodes, in, v->ident);
    return in;
}

void fs_release_inode(fs *f, fs_inode *in)
{
    if (in->nlookup > 0 || in->open_count > 0 || in->of)
        return;
    if (fs_committed(f, in))
        return;
    fs_inode_release_if_unused(f->inodes, in);
}

void fs_key_changed(fs *f, const char *key, size_t key_len, bool removed)
{
    (void)removed;   /* judged from the state itself */
    if (f)
        fs_reconcile(f, key, key_len);
}

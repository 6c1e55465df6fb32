/*
 * inode.c - key <-> inode number table for the FUSE adapter (see inode.h
 * for the invariants).  Two chained hash tables over the same records, one
 * by key and one by inode number; both grow by doubling.
 */
#include "inode.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fs_inode_table {
    fs_inode **by_key;
    fs_inode **by_ino;
    fs_inode **by_ident;
    size_t n_buckets;   /* power of two, same for both tables */
    size_t count;
    uint64_t next_ino;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_ino(uint64_t ino)
{
    ino ^= ino >> 33;
    ino *= 0xff51afd7ed558ccdull;
    ino ^= ino >> 33;
    return ino;
}

fs_inode_table *fs_inode_table_create(void)
{
    fs_inode_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_buckets = 1024;
    t->by_key = calloc(t->n_buckets, sizeof *t->by_key);
    t->by_ino = calloc(t->n_buckets, sizeof *t->by_ino);
    t->by_ident = calloc(t->n_buckets, sizeof *t->by_ident);
    if (!t->by_key || !t->by_ino || !t->by_ident) {
        free(t->by_key);
        free(t->by_ino);
        free(t->by_ident);
        free(t);
        return NULL;
    }
    t->next_ino = FS_INO_FIRST_KEY;
    return t;
}

void fs_inode_table_destroy(fs_inode_table *t)
{
    if (!t)
        return;
    for (size_t b = 0; b < t->n_buckets; b++) {
        fs_inode *in = t->by_ino[b];
        while (in) {
            fs_inode *next = in->next_by_ino;
            free(in->key);
            free(in);
            in = next;
        }
    }
    free(t->by_key);
    free(t->by_ino);
    free(t->by_ident);
    free(t);
}

static void link_key(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_bytes(in->key, in->key_len) & (t->n_buckets - 1);
    in->next_by_key = t->by_key[b];
    t->by_key[b] = in;
}

static void link_ino(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_ino(in->ino) & (t->n_buckets - 1);
    in->next_by_ino = t->by_ino[b];
    t->by_ino[b] = in;
}

static void link_ident(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_ino(in->ident) & (t->n_buckets - 1);
    in->next_by_ident = t->by_ident[b];
    t->by_ident[b] = in;
}

static void unlink_ident(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_ino(in->ident) & (t->n_buckets - 1);
    for (fs_inode **pp = &t->by_ident[b]; *pp; pp = &(*pp)->next_by_ident) {
        if (*pp == in) {
            *pp = in->next_by_ident;
            return;
        }
    }
}

static void unlink_key(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_bytes(in->key, in->key_len) & (t->n_buckets - 1);
    for (fs_inode **pp = &t->by_key[b]; *pp; pp = &(*pp)->next_by_key) {
        if (*pp == in) {
            *pp = in->next_by_key;
            return;
        }
    }
}

static void unlink_ino(fs_inode_table *t, fs_inode *in)
{
    size_t b = hash_ino(in->ino) & (t->n_buckets - 1);
    for (fs_inode **pp = &t->by_ino[b]; *pp; pp = &(*pp)->next_by_ino) {
        if (*pp == in) {
            *pp = in->next_by_ino;
            return;
        }
    }
}

/* Double the bucket arrays once the load factor passes 1; on ENOMEM the
 * table simply stays at its size (chains get longer, nothing breaks). */
static void maybe_grow(fs_inode_table *t)
{
    if (t->count < t->n_buckets)
        return;
    size_t n = t->n_buckets * 2;
    fs_inode **by_key = calloc(n, sizeof *by_key);
    fs_inode **by_ino = calloc(n, sizeof *by_ino);
    fs_inode **by_ident = calloc(n, sizeof *by_ident);
    if (!by_key || !by_ino || !by_ident) {
        free(by_key);
        free(by_ino);
        free(by_ident);
        return;
    }
    fs_inode **old = t->by_ino;
    size_t old_n = t->n_buckets;
    free(t->by_key);
    free(t->by_ident);
    t->by_key = by_key;
    t->by_ino = by_ino;
    t->by_ident = by_ident;
    t->n_buckets = n;
    for (size_t b = 0; b < old_n; b++) {
        fs_inode *in = old[b];
        while (in) {
            fs_inode *next = in->next_by_ino;
            if (!in->orphan)
                link_key(t, in);
            link_ino(t, in);
            if (in->ident)
                link_ident(t, in);
            in = next;
        }
    }
    free(old);
}

fs_inode *fs_inode_by_key(fs_inode_table *t, const char *key, size_t key_len)
{
    size_t b = hash_bytes(key, key_len) & (t->n_buckets - 1);
    for (fs_inode *in = t->by_key[b]; in; in = in->next_by_key)
        if (in->key_len == key_len && memcmp(in->key, key, key_len) == 0)
            return in;
    return NULL;
}

fs_inode *fs_inode_by_ino(fs_inode_table *t, uint64_t ino)
{
    size_t b = hash_ino(ino) & (t->n_buckets - 1);
    for (fs_inode *in = t->by_ino[b]; in; in = in->next_by_ino)
        if (in->ino == ino)
            return in;
    return NULL;
}

fs_inode *fs_inode_by_ident(fs_inode_table *t, uint64_t ident)
{
    if (!ident)
        return NULL;
    size_t b = hash_ino(ident) & (t->n_buckets - 1);
    for (fs_inode *in = t->by_ident[b]; in; in = in->next_by_ident)
        if (in->ident == ident)
            return in;
    return NULL;
}

void fs_inode_set_ident(fs_inode_table *t, fs_inode *in, uint64_t ident)
{
    if (in->ident == ident)
        return;
    if (in->ident)
        unlink_ident(t, in);
    if (ident) {
        fs_inode *old = fs_inode_by_ident(t, ident);
        if (old) {
            unlink_ident(t, old);
            old->ident = 0;
        }
    }
    in->ident = ident;
    if (ident)
        link_ident(t, in);
}

void fs_inode_each(fs_inode_table *t, void (*fn)(fs_inode *in, void *arg),
                   void *arg)
{
    for (size_t b = 0; b < t->n_buckets; b++)
        for (fs_inode *in = t->by_ino[b]; in; in = in->next_by_ino)
            fn(in, arg);
}

fs_inode *fs_inode_get_or_add(fs_inode_table *t, const char *key,
                              size_t key_len)
{
    fs_inode *in = fs_inode_by_key(t, key, key_len);
    if (in)
        return in;
    in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->key = malloc(key_len + 1);
    if (!in->key) {
        free(in);
        return NULL;
    }
    memcpy(in->key, key, key_len);
    in->key[key_len] = '\0';
    in->key_len = (uint32_t)key_len;
    in->ino = t->next_ino++;
    maybe_grow(t);
    link_key(t, in);
    link_ino(t, in);
    t->count++;
    return in;
}

int fs_inode_rekey(fs_inode_table *t, fs_inode *in, const char *key,
                   size_t key_len)
{
    /* one record per key: the caller detached the one that held it */
    fs_inode *holder = fs_inode_by_key(t, key, key_len);
    assert(!holder || holder == in);
    (void)holder;
    char *copy = malloc(key_len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, key, key_len);
    copy[key_len] = '\0';
    if (!in->orphan)
        unlink_key(t, in);
    free(in->key);
    in->key = copy;
    in->key_len = (uint32_t)key_len;
    in->orphan = false;
    link_key(t, in);
    return 0;
}

void fs_inode_orphan(fs_inode_table *t, fs_inode *in)
{
    if (in->orphan)
        return;
    unlink_key(t, in);
    in->orphan = true;
}

void fs_inode_release_if_unused(fs_inode_table *t, fs_inode *in)
{
    if (in->nlookup > 0 || in->open_count > 0 || in->of)
        return;
    if (!in->orphan)
        unlink_key(t, in);
    if (in->ident)
        unlink_ident(t, in);
    unlink_ino(t, in);
    t->count--;
    free(in->key);
    free(in);
}

/*
 * kv.c - owns the key-value state machine: the map of keys to immutable,
 * reference-counted values, the exactly-once session table, and applying
 * committed entries in slot order.  Op encoding is in kv_op.c, snapshots
 * in kv_snapshot.c.
 *
 * Structure: every key is one kv_node, reachable two ways:
 *   - an open-addressing hash table (linear probing, backward-shift
 *     deletion, grown at 70 % load) for kv_get;
 *   - a skip list in byte order for kv_scan; a node's height comes from
 *     its key hash (1 + one level per two zero bits, p = 1/4), so no
 *     randomness is involved and scans need no rebuilding: kv_scan only
 *     reads, which keeps it safe under a shared (reader) lock.
 *
 * Invariants:
 *   1. A key is in the hash table iff it is in the skip list; count and
 *      value_bytes describe exactly those nodes.
 *   2. Every stored key passed kv_key_check (kv.h: a path the mount can
 *      show, a directory's with a '/' at its end), checked as each
 *      committed op is applied, on every replica alike; an op that fails
 *      it changes nothing and is counted (invalid_ops).  The tree
 *      invariant (kv.h "Keys") holds after every op: a key's parent
 *      directory exists (kv_apply.c checks it; kv_map_replace moves a
 *      directory with everything below it at once).
 *   3. The map holds one reference on each node's value.  A value is
 *      never modified after creation; writes install a new value and drop
 *      the map's reference on the old one, so readers holding a reference
 *      keep a consistent copy.  Reference counts are atomic because
 *      readers on other threads may drop theirs while the applier runs.
 *   4. Each op either applies completely or not at all: everything an op
 *      needs is allocated before anything is changed.
 *   5. applied is the last slot whose entry was applied completely.  If an
 *      entry stops part-way with -ENOMEM, (partial_slot, partial_done)
 *      records how many of its requests were processed, and retrying the
 *      same entry continues after them: nothing is applied twice and no
 *      callback is repeated.
 *   6. Results are deterministic functions of the committed entries (no
 *      clock, no randomness, no allocation failure recorded as a result),
 *      so every replica reaches the same map and session table.
 *   7. A COND op's condition is judged on the state its entry meets, just
 *      before the guarded op; file identities come from (slot, position
 *      in the batch), so they too are the same on every replica.
 *   8. digest is the sum modulo 2^256 of kv_rec_hash() over the live keys
 *      (kv.h, "State digest"); every change of the map adds and subtracts
 *      the hashes of the records it creates and removes, computed before
 *      anything changes (so a failed hash changes nothing, invariant 4).
 *
 * Frozen views (kv_freeze, kv_view.c): a snapshot is written on another thread from
 * the skip list's level 0 while the owner goes on applying.  While a view
 * is out (gen is its generation):
 *   F1. nodes created now get born == gen; the view skips them;
 *   F2. a node the view can see (born != gen) is never changed: its first
 *       change replaces it by a new node (F1) and marks it DEAD; a removed
 *       one is marked DEAD; DEAD nodes leave the hash table at once but
 *       stay in the skip list, with their value, until the view is thawed
 *       and they are reclaimed (kv_reclaim), so the view walks them;
 *   F3. level-0 links are published with release stores and read by the
 *       view with acquire loads; nothing the view reads is freed before
 *       kv_thaw.
 * DEAD nodes are skipped by kv_scan and never found by kv_get.  A live
 * node comes first among nodes with its key (inserts go before the first
 * node >= key), so removal finds it where it always did.
 */
#include "kv_map.h"
#include "chain_int.h"

#include <assert.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>


static const char *node_key(const kv_node *n)
{
    return (const char *)(n->next + n->height);
}

/* 64-bit hash of a key: 8-byte words mixed with multiply/xor-shift (the
 * murmur finaliser), good enough that linear probing stays short. */
static uint64_t key_hash(const char *key, size_t len)
{
    const uint64_t m = 0xc6a4a7935bd1e995ull;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * m);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t k;
        memcpy(&k, key + i, 8);
        k *= m;
        k ^= k >> 47;
        k *= m;
        h ^= k;
        h *= m;
    }
    uint64_t tail = 0;
    for (size_t j = 0; i + j < len; j++)
        tail |= (uint64_t)(uint8_t)key[i + j] << (8 * j);
    h ^= tail;
    h *= m;
    h ^= h >> 47;
    h *= m;
    h ^= h >> 47;
    return h;
}

int kv_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* ------------------------------------------------------------ values */

kv_value *kv_value_new(const uint8_t *a, uint32_t alen, const uint8_t *b,
                       uint32_t blen, uint64_t mtime_ms, uint64_t version,
                       uint64_t ident)
{
    kv_value *v = malloc(sizeof *v + (size_t)alen + blen);
    if (!v)
        return NULL;
    v->refs = 1;
    v->len = alen + blen;
    v->mtime_ms = mtime_ms;
    v->version = version;
    v->changes = 1;
    v->ident = ident;
    v->uid = v->gid = v->mode = 0;
    if (alen && a)          /* a NULL: the caller fills the bytes */
        memcpy(v->data, a, alen);
    if (blen && b)
        memcpy(v->data + alen, b, blen);
    return v;
}

void kv_value_ref(const kv_value *v)
{
    if (v)
        __atomic_fetch_add(&((kv_value *)v)->refs, 1, __ATOMIC_RELAXED);
}

void kv_value_unref(const kv_value *v)
{
    if (v && __atomic_sub_fetch(&((kv_value *)v)->refs, 1,
                                __ATOMIC_ACQ_REL) == 0)
        free((kv_value *)v);
}

/* ------------------------------------------------------------ digest */

#define KV_RECORD_TAG "pxkvrec1"
#define KV_RECORD_TAG_OWNED "pxkvrec2"

/* SHA-256 of the canonical record of one key (kv.h, "State digest"). */
int kv_rec_hash(kv *s, const char *key, size_t len, const kv_value *v,
                       uint8_t out[KV_DIGEST_BYTES])
{
    return kv_record_hash(&s->hasher, key, len, v, out);
}

int kv_record_hash(chain_hasher *h, const char *key, size_t len,
                   const kv_value *v, uint8_t out[KV_DIGEST_BYTES])
{
    /* tag, key length | mtime, version, identity, [uid, gid, mode,]
     * value length */
    uint8_t fixed[8 + 2 + 8 + 8 + 8 + 12 + 4];
    unsigned int out_len = 0;
    size_t tail = 8 + 8 + 8 + 4;
    memcpy(fixed, v->mode ? KV_RECORD_TAG_OWNED : KV_RECORD_TAG, 8);
    le_put16(fixed + 8, (uint16_t)len);
    le_put64(fixed + 10, v->mtime_ms);
    le_put64(fixed + 18, v->version);
    le_put64(fixed + 26, v->ident);
    if (v->mode) {
        le_put32(fixed + 34, v->uid);
        le_put32(fixed + 38, v->gid);
        le_put32(fixed + 42, v->mode);
        tail += 12;
    }
    le_put32(fixed + 10 + tail - 4, v->len);
    if (EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1 ||
        EVP_DigestUpdate(h->ctx, fixed, 10) != 1 ||
        EVP_DigestUpdate(h->ctx, key, len) != 1 ||
        EVP_DigestUpdate(h->ctx, fixed + 10, tail) != 1 ||
        (v->len && EVP_DigestUpdate(h->ctx, v->data, v->len) != 1) ||
        EVP_DigestFinal_ex(h->ctx, out, &out_len) != 1 ||
        out_len != KV_DIGEST_BYTES)
        return -EIO;
    return 0;
}

/* d += h (sign > 0) or d -= h, modulo 2^256; h little-endian. */
static void digest_add(uint64_t d[4], const uint8_t h[KV_DIGEST_BYTES],
                       int sign)
{
    uint64_t carry = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t x = le_get64(h + 8 * i);
        if (sign > 0) {
            uint64_t t = d[i] + x;
            uint64_t c1 = t < x;
            d[i] = t + carry;
            carry = c1 | (d[i] < t);
        } else {
            uint64_t t = d[i] - x;
            uint64_t b1 = d[i] < x;
            d[i] = t - carry;
            carry = b1 | (t < carry);
        }
    }
}

static void digest_out(const uint64_t d[4], uint8_t out[KV_DIGEST_BYTES])
{
    for (int i = 0; i < 4; i++)
        le_put64(out + 8 * i, d[i]);
}

void kv_digest(const kv *s, uint8_t out[KV_DIGEST_BYTES])
{
    digest_out(s->digest, out);
}

/* ------------------------------------------------------------ map */

kv *kv_create(void)
{
    kv *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = KV_TABLE_MIN;
    s->table = calloc(s->cap, sizeof *s->table);
    s->sessions = kv_sessions_create(KV_SESSION_CLIENTS, KV_SESSION_PER_CLIENT);
    if (!s->table || !s->sessions || chain_hasher_init(&s->hasher) != 0) {
        if (s->sessions)
            kv_sessions_destroy(s->sessions);
        free(s->table);
        free(s);
        return NULL;
    }
    return s;
}

/* Hand the pages of freed memory back to the system after a large map
 * went (kv_destroy, kv_reclaim): glibc keeps freed chunks of a thread's
 * arena resident below its top, so a state built and dropped on a helper
 * thread (a verification, a snapshot received and replaced) left its whole
 * size in the process's RSS.  A few ms per call, only after >= 64k nodes. */
#define KV_TRIM_NODES 65536
static void memory_trim(size_t freed_nodes)
{
#ifdef __GLIBC__
    if (freed_nodes >= KV_TRIM_NODES)
        malloc_trim(0);
#else
    (void)freed_nodes;
#endif
}

void kv_destroy(kv *s)
{
    if (!s)
        return;
    /* a view out would read freed memory: the owner thaws first */
    assert(s->view == NULL);
    size_t freed = 0;
    kv_node *n = s->head[0];
    while (n) {
        kv_node *next = n->next[0];
        kv_value_unref(n->val);
        free(n);
        n = next;
        freed++;
    }
    kv_sessions_destroy(s->sessions);
    chain_hasher_free(&s->hasher);
    free(s->dead);
    free(s->table);
    free(s);
    memory_trim(freed);
}

uint64_t kv_invalid_ops(const kv *s)
{
    return s ? s->invalid_ops : 0;
}

uint64_t kv_applied_index(const kv *s)
{
    return s->applied;
}

uint64_t kv_count(const kv *s)
{
    return s->count;
}

uint64_t kv_bytes(const kv *s)
{
    return s->value_bytes;
}

static uint64_t table_find_slot(const kv *s, const char *key, size_t len,
                                uint64_t h, bool *found)
{
    uint64_t mask = s->cap - 1;
    uint64_t i = h & mask;
    /* Bounded: the table is never full (load <= 70 %). */
    for (uint64_t probes = 0; probes < s->cap; probes++) {
        kv_node *n = s->table[i];
        if (!n)
            break;
        if (n->hash == h && n->key_len == len &&
            memcmp(node_key(n), key, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
    *found = false;
    return i;
}

kv_node *kv_find_node(const kv *s, const char *key, size_t len)
{
    bool found;
    if (len == 0 || len > KV_MAX_KEY)
        return NULL;
    uint64_t i = table_find_slot(s, key, len, key_hash(key, len), &found);
    return found ? s->table[i] : NULL;
}

const kv_value *kv_get(const kv *s, const char *key, size_t key_len)
{
    kv_node *n = kv_find_node(s, key, key_len);
    return n ? n->val : NULL;
}

/* Make room for `more` keys (invariant 4: before any change). */
static int table_reserve_n(kv *s, uint64_t more)
{
    if ((s->count + more) * 10 <= s->cap * 7)
        return 0;
    uint64_t ncap = s->cap * 2;
    while ((s->count + more) * 10 > ncap * 7)
        ncap *= 2;
    kv_node **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return -ENOMEM;
    for (uint64_t i = 0; i < s->cap; i++) {
        kv_node *n = s->table[i];
        if (!n)
            continue;
        uint64_t j = n->hash & (ncap - 1);
        while (nt[j])
            j = (j + 1) & (ncap - 1);
        nt[j] = n;
    }
    free(s->table);
    s->table = nt;
    s->cap = ncap;
    return 0;
}

static int table_reserve(kv *s)
{
    return table_reserve_n(s, 1);
}

static void table_remove_at(kv *s, uint64_t i)
{
    uint64_t mask = s->cap - 1;
    s->table[i] = NULL;
    /* Backward shift: move later entries of the run into the hole when
     * their home slot does not lie cyclically in (hole, j]. */
    uint64_t j = i;
    for (uint64_t probes = 0; probes < s->cap; probes++) {
        j = (j + 1) & mask;
        kv_node *n = s->table[j];
        if (!n)
            return;
        uint64_t home = n->hash & mask;
        bool stays = (i <= j) ? (i < home && home <= j)
                              : (i < home || home <= j);
        if (stays)
            continue;
        s->table[i] = n;
        s->table[j] = NULL;
        i = j;
    }
}

static kv_node *node_new(const kv *s, const char *key, size_t len,
                         uint64_t h)
{
    uint8_t height = 1;
    uint64_t bits = h >> 16;
    while (height < KV_SKIP_MAX && (bits & 3) == 0) {
        height++;
        bits >>= 2;
    }
    kv_node *n = malloc(sizeof *n + height * sizeof(kv_node *) + len);
    if (!n)
        return NULL;
    n->hash = h;
    n->val = NULL;
    n->key_len = (uint16_t)len;
    n->height = height;
    n->flags = 0;
    n->born = s->gen;
    memcpy((char *)node_key(n), key, len);
    return n;
}

/* Fill prev[l] with the address of the link at level l that points at
 * the first node >= key. */
static void skip_find(kv *s, const char *key, size_t len,
                      kv_node **prev[KV_SKIP_MAX])
{
    kv_node **links = s->head;
    for (int l = KV_SKIP_MAX - 1; l >= 0; l--) {
        while (links[l] && kv_key_cmp(node_key(links[l]), links[l]->key_len,
                                   key, len) < 0)
            links = links[l]->next;
        prev[l] = &links[l];
    }
}

/* Link n into the skip list before the first node >= its key.  The
 * level-0 link is published with a release store (F3). */
static void skip_link(kv *s, kv_node *n)
{
    kv_node **prev[KV_SKIP_MAX];
    skip_find(s, node_key(n), n->key_len, prev);
    for (int l = n->height - 1; l >= 0; l--) {
        n->next[l] = *prev[l];
        if (l == 0)
            __atomic_store_n(prev[0], n, __ATOMIC_RELEASE);
        else
            *prev[l] = n;
    }
}

/* Unlink n from the skip list: it is among the nodes with its key, which
 * follow the first node >= key at every level it is on. */
static void skip_unlink(kv *s, kv_node *n)
{
    kv_node **prev[KV_SKIP_MAX];
    skip_find(s, node_key(n), n->key_len, prev);
    for (int l = 0; l < n->height; l++) {
        kv_node **link = prev[l];
        while (*link && *link != n)
            link = &(*link)->next[l];
        assert(*link == n);
        if (*link == n)
            *link = n->next[l];
    }
}

/* The first empty slot of n's probe run: for a key known to be absent,
 * no node in the run needs to be compared (or even read). */
static void table_place(kv *s, kv_node *n)
{
    uint64_t mask = s->cap - 1;
    uint64_t i = n->hash & mask;
    while (s->table[i])          /* bounded: load <= 70 % */
        i = (i + 1) & mask;
    s->table[i] = n;
}

/* Insert a new node whose key is absent (table space reserved by the
 * caller). */
static void map_insert(kv *s, kv_node *n)
{
    table_place(s, n);
    skip_link(s, n);
    s->count++;
    s->value_bytes += n->val->len;
}

/* Room for `more` DEAD nodes (F2), before anything changes. */
int kv_dead_reserve(kv *s, size_t more)
{
    if (s->n_dead + more <= s->cap_dead)
        return 0;
    kv_node **p = chain_grow(s->dead, &s->cap_dead, s->n_dead + more,
                             sizeof *p, 64);
    if (!p)
        return -ENOMEM;
    s->dead = p;
    return 0;
}

/* Take n out of the map.  `old` is the hash of its record (digest); a
 * frozen map needs a DEAD slot reserved (dead_reserve). */
void kv_map_remove_hashed(kv *s, kv_node *n,
                              const uint8_t old[KV_DIGEST_BYTES])
{
    bool found;
    uint64_t i = table_find_slot(s, node_key(n), n->key_len, n->hash, &found);
    if (found && s->table[i] == n)
        table_remove_at(s, i);
    s->count--;
    s->value_bytes -= n->val->len;
    digest_add(s->digest, old, -1);
    if (s->view) {
        n->flags |= KV_NODE_DEAD;          /* F2: reclaimed after thaw */
        assert(s->n_dead < s->cap_dead);
        s->dead[s->n_dead++] = n;
        return;
    }
    skip_unlink(s, n);
    kv_value_unref(n->val);
    free(n);
}

int kv_map_remove(kv *s, kv_node *n)
{
    uint8_t old[KV_DIGEST_BYTES];
    if (kv_rec_hash(s, node_key(n), n->key_len, n->val, old) != 0 ||
        (s->view && kv_dead_reserve(s, 1) != 0))
        return -ENOMEM;
    kv_map_remove_hashed(s, n, old);
    return 0;
}

/* Store v under key (takes the caller's reference on v); on failure v is
 * released and nothing changed. */
int kv_map_put(kv *s, const char *key, size_t len, kv_value *v)
{
    uint8_t h_new[KV_DIGEST_BYTES], h_old[KV_DIGEST_BYTES];
    kv_node *n = kv_find_node(s, key, len);
    if (kv_rec_hash(s, key, len, v, h_new) != 0 ||
        (n && kv_rec_hash(s, key, len, n->val, h_old) != 0))
        goto out_unref;
    if (n && !(s->view && n->born != s->gen)) {
        /* not seen by a view: change in place */
        s->value_bytes -= n->val->len;
        kv_value_unref(n->val);
        n->val = v;
        s->value_bytes += v->len;
        digest_add(s->digest, h_old, -1);
        digest_add(s->digest, h_new, 1);
        return 0;
    }
    if (n) {
        /* F2: a view sees n; a new node takes its place */
        if (kv_dead_reserve(s, 1) != 0)
            goto out_unref;
        kv_node *m = node_new(s, key, len, n->hash);
        if (!m)
            goto out_unref;
        m->val = v;
        kv_map_remove_hashed(s, n, h_old);
        map_insert(s, m);     /* the table slot n left is found again */
        digest_add(s->digest, h_new, 1);
        return 0;
    }
    if (table_reserve(s) != 0)
        goto out_unref;
    n = node_new(s, key, len, key_hash(key, len));
    if (!n)
        goto out_unref;
    n->val = v;
    map_insert(s, n);
    digest_add(s->digest, h_new, 1);
    return 0;
out_unref:
    kv_value_unref(v);
    return -ENOMEM;
}

const char *kv_node_key(const kv_node *n)
{
    return node_key(n);
}

/* The first node (live or DEAD) with a key >= `key`, without writing. */
static kv_node *lower_bound(const kv *s, const char *key, size_t len)
{
    kv_node *const *links = s->head;
    for (int l = KV_SKIP_MAX - 1; l >= 0; l--)
        while (links[l] && kv_key_cmp(node_key(links[l]), links[l]->key_len,
                                   key, len) < 0)
            links = links[l]->next;
    return links[0];
}

static bool has_prefix(const kv_node *n, const char *prefix, size_t len)
{
    return n->key_len >= len && memcmp(node_key(n), prefix, len) == 0;
}

int kv_map_collect(const kv *s, const char *prefix, size_t len,
                   kv_node ***out, size_t *n)
{
    kv_node **v = NULL;
    size_t cnt = 0, cap = 0;
    for (kv_node *x = lower_bound(s, prefix, len); x && has_prefix(x, prefix, len);
         x = x->next[0]) {
        if (x->flags & KV_NODE_DEAD)
            continue;
        if (cnt == cap) {
            kv_node **nv = chain_grow(v, &cap, cnt + 1, sizeof *nv, 16);
            if (!nv) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = x;
    }
    *out = v;
    *n = cnt;
    return 0;
}

bool kv_map_has_below(const kv *s, const char *prefix, size_t len)
{
    for (kv_node *x = lower_bound(s, prefix, len); x && has_prefix(x, prefix, len);
         x = x->next[0])
        if (!(x->flags & KV_NODE_DEAD) && x->key_len > len)
            return true;
    return false;
}

int kv_map_replace(kv *s, kv_node *const *rm, size_t n_rm,
                   const kv_map_add *add, size_t n_add)
{
    int rc = -ENOMEM;
    uint8_t (*h_rm)[KV_DIGEST_BYTES] = calloc(n_rm + 1, sizeof *h_rm);
    uint8_t (*h_add)[KV_DIGEST_BYTES] = calloc(n_add + 1, sizeof *h_add);
    kv_node **nodes = calloc(n_add + 1, sizeof *nodes);
    size_t made = 0;
    if (!h_rm || !h_add || !nodes)
        goto out;
    for (size_t i = 0; i < n_rm; i++)
        if (kv_rec_hash(s, node_key(rm[i]), rm[i]->key_len, rm[i]->val,
                        h_rm[i]) != 0)
            goto out;
    for (size_t i = 0; i < n_add; i++)
        if (kv_rec_hash(s, add[i].key, add[i].len, add[i].val, h_add[i]) != 0)
            goto out;
    if (table_reserve_n(s, n_add) != 0 ||
        (s->view && kv_dead_reserve(s, n_rm) != 0))
        goto out;
    for (; made < n_add; made++) {
        nodes[made] = node_new(s, add[made].key, add[made].len,
                               key_hash(add[made].key, add[made].len));
        if (!nodes[made])
            goto out;
    }
    /* nothing can fail from here on (invariant 4) */
    for (size_t i = 0; i < n_rm; i++)
        kv_map_remove_hashed(s, rm[i], h_rm[i]);
    for (size_t i = 0; i < n_add; i++) {
        assert(!kv_find_node(s, add[i].key, add[i].len));
        nodes[i]->val = add[i].val;
        map_insert(s, nodes[i]);
        digest_add(s->digest, h_add[i], 1);
    }
    made = 0;
    rc = 0;
out:
    for (size_t i = 0; i < made; i++)
        free(nodes[i]);
    free(nodes);
    free(h_rm);
    free(h_add);
    return rc;
}

int kv_scan(const kv *s, const char *prefix, size_t prefix_len,
            kv_visit_fn fn, void *arg)
{
    /* Lower bound without writing: walk levels from the top. */
    kv_node *const *links = s->head;
    for (int l = KV_SKIP_MAX - 1; l >= 0; l--)
        while (links[l] && kv_key_cmp(node_key(links[l]), links[l]->key_len,
                                   prefix, prefix_len) < 0)
            links = links[l]->next;
    for (const kv_node *n = links[0]; n; n = n->next[0]) {
        if (n->key_len < prefix_len ||
            (prefix_len && memcmp(node_key(n), prefix, prefix_len) != 0))
            break;
        if (n->flags & KV_NODE_DEAD)
            continue;
        int rc = fn(arg, node_key(n), n->key_len, n->val);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------- reclaiming after a view (kv_view.c) */

size_t kv_reclaim(kv *s, size_t max)
{
    size_t done = 0;
    if (!s || s->view)
        return 0;
    while (s->n_dead && done < max) {
        kv_node *n = s->dead[--s->n_dead];
        skip_unlink(s, n);
        kv_value_unref(n->val);
        free(n);
        done++;
    }
    if (s->n_dead == 0 && done)
        memory_trim(done);      /* one big reclaim (kv_reclaim(SIZE_MAX)) */
    return s->n_dead;
}

size_t kv_dead_nodes(const kv *s)
{
    return s ? s->n_dead : 0;
}

static int digest_visit(void *arg, const char *key, size_t key_len,
                        const kv_value *v)
{
    void **a = arg;
    kv *s = a[0];
    uint8_t h[KV_DIGEST_BYTES];
    if (kv_rec_hash(s, key, key_len, v, h) != 0)
        return -EIO;
    digest_add(a[1], h, 1);
    return 0;
}

int kv_digest_recompute(kv *s, uint8_t out[KV_DIGEST_BYTES])
{
    uint64_t d[4] = { 0, 0, 0, 0 };
    void *arg[2] = { s, d };
    int rc = kv_scan(s, "", 0, digest_visit, arg);
    if (rc)
        return rc;
    digest_out(d, out);
    return 0;
}

/* ------------------------------------------------- for kv_snapshot.c */

kv_sessions *kv_session_table(kv *s)
{
    return s->sessions;
}

const kv_sessions *kv_session_table_const(const kv *s)
{
    return s->sessions;
}

void kv_set_applied(kv *s, uint64_t index)
{
    s->applied = index;
    s->partial_slot = 0;
    s->partial_done = 0;
}

int kv_insert_value(kv *s, const char *key, size_t len, kv_value *v)
{
    return kv_map_put(s, key, len, v);
}

/* A node holding `v` (taken) for a key that is not in the map, with the
 * record's hash in h and table room reserved; NULL (v let go): out of
 * memory. */
static kv_node *fresh_node(kv *s, const char *key, size_t len, kv_value *v,
                           uint8_t h[KV_DIGEST_BYTES])
{
    assert(!s->view);
    kv_node *n = NULL;
    if (kv_rec_hash(s, key, len, v, h) == 0 && table_reserve(s) == 0)
        n = node_new(s, key, len, key_hash(key, len));
    if (!n) {
        kv_value_unref(v);
        return NULL;
    }
    n->val = v;
    return n;
}

int kv_insert_new(kv *s, const char *key, size_t len, kv_value *v)
{
    uint8_t h[KV_DIGEST_BYTES];
    kv_node *n = fresh_node(s, key, len, v, h);
    if (!n)
        return -ENOMEM;
    map_insert(s, n);
    digest_add(s->digest, h, 1);
    return 0;
}

int kv_append_new(kv *s, const char *key, size_t len, kv_value *v,
                  kv_node **tail)
{
    uint8_t h[KV_DIGEST_BYTES];
    kv_node *n = fresh_node(s, key, len, v, h);
    if (!n)
        return -ENOMEM;
    table_place(s, n);
    /* after the last node at each of its levels: no search (the caller
     * knows the key is greater than every key in the map) */
    for (int l = 0; l < n->height; l++) {
        kv_node **link = tail[l] ? &tail[l]->next[l] : &s->head[l];
        n->next[l] = NULL;
        if (l == 0)
            __atomic_store_n(link, n, __ATOMIC_RELEASE);
        else
            *link = n;
        tail[l] = n;
    }
    s->count++;
    s->value_bytes += v->len;
    digest_add(s->digest, h, 1);
    return 0;
}

int kv_tally_record(kv *s, const char *key, size_t len, const kv_value *v)
{
    uint8_t h[KV_DIGEST_BYTES];
    if (kv_rec_hash(s, key, len, v, h) != 0)
        return -ENOMEM;
    s->count++;
    s->value_bytes += v->len;
    digest_add(s->digest, h, 1);
    return 0;
}

bool kv_frozen(const kv *s)
{
    return s->view != NULL;
}

void kv_swap(kv *a, kv *b)
{
    assert(!a->view && !b->view);
    kv tmp = *a;
    *a = *b;
    *b = tmp;
    /* the count describes what each map applied, not its contents */
    uint64_t invalid = a->invalid_ops;
    a->invalid_ops = b->invalid_ops;
    b->invalid_ops = invalid;
}

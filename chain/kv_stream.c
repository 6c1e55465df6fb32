/*
 * kv_stream.c - owns the incremental parser of the key-value snapshot
 * payload (kv_loader): the payload layout of kv_snapshot.c (key count,
 * session table, then every key with its value in ascending byte order),
 * fed in pieces of any size, as they come out of zlib, so that neither a
 * snapshot file nor a transfer from a peer has to be held in memory whole.
 *
 * Payload, uncompressed (the same bytes as in kv_snapshot.c):
 *   offset  size  meaning
 *   0       8     key count N
 *   8       8     session table length S (12 .. KV_SESSIONS_MAX_BYTES)
 *   16      S     kv_sessions_encode bytes
 *   then N records, keys strictly ascending in byte order:
 *           2     key length K (1..KV_MAX_KEY), | 0x8000 when the key
 *                 has an owner and mode (KV_RECORD_OWNED), | 0x4000
 *                 when its change count is not 1 (KV_RECORD_COUNTED)
 *           K     key
 *           8     mtime_ms
 *           8     version
 *           8     identity (never 0)
 *           8     with KV_RECORD_COUNTED only: change count (>= 2)
 *           12    with KV_RECORD_OWNED only: uid, gid, mode (S_IFREG for
 *                 a file's key, S_IFDIR for a directory's, | bits <=
 *                 07777)
 *           4     value length V (<= KV_MAX_VALUE)
 *           V     value
 * A key without owner and mode, changed once, has the record it always
 * had, so a payload written before owners or change counts existed reads
 * the same (a key of such a payload counts 1 change: its history before
 * that snapshot is not known), and a state without them writes the same
 * bytes.  The containers that carry a payload with counted records bumped
 * their format versions (kv_snapshot.c 3, snapfile.c 2) and still read
 * the older ones.
 *
 * Invariants:
 *   1. Memory follows the bytes that really arrived, never a claimed
 *      length: the session table buffer grows as its bytes come; a value
 *      is allocated at its (checked, <= KV_MAX_VALUE) length once its
 *      record header is complete.  Beyond the state being built the
 *      loader holds at most one record header (<= 2 + KV_MAX_KEY + 28
 *      bytes) and the previous key.
 *   2. Every record is checked as soon as its header is complete: key
 *      rule (kv_key_check), strictly ascending keys, identity not 0,
 *      value length; a failure is final (-EINVAL, *why says what) and
 *      nothing is kept.
 *   3. The map is built with kv_append_new (each key after the last, no
 *      search), so its digest (kv.h) is computed from every record as it
 *      arrives: after kv_loader_finish the built state's digest is a
 *      recomputation from the payload.  A check-only loader
 *      (kv_loader_check_only: snapfile_load without a state, as
 *      verification of the other snapshots does) computes the same digest,
 *      key count and value bytes record by record and keeps no map, so
 *      checking a file costs one value's memory, not a second state.
 */
#include "kv_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOADER_HEAD 16
#define REC_FIXED 28                      /* after the key */
#define REC_OWNER 12                      /* uid, gid, mode */
#define REC_COUNT 8                       /* change count */
#define REC_FLAGS (KV_RECORD_OWNED | KV_RECORD_COUNTED)
#define REC_MAX_HEADER (2 + KV_MAX_KEY + REC_FIXED + REC_COUNT + REC_OWNER)

enum loader_phase { PH_HEAD, PH_SESS, PH_REC, PH_VALUE, PH_DONE, PH_FAILED };

struct kv_loader {
    kv *s;
    enum loader_phase phase;
    uint8_t head[LOADER_HEAD];
    uint64_t count, sess_len, keys;
    uint8_t *sess;
    size_t sess_cap, sess_have;
    uint8_t rec[REC_MAX_HEADER];
    size_t rec_have;
    kv_value *val;                        /* value being filled */
    uint32_t val_have;
    char key[KV_MAX_KEY];                 /* key of `val`, then previous */
    struct kv_node *tail[KV_SKIP_LEVELS]; /* last node of each level */
    bool check_only;                      /* kv_loader_check_only */
    size_t key_len;
    bool has_prev;
    uint64_t consumed;
    const char *why;
    int err;
};

int kv_loader_new(kv_loader **out)
{
    kv_loader *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->s = kv_create();
    if (!l->s) {
        free(l);
        return -ENOMEM;
    }
    *out = l;
    return 0;
}

void kv_loader_check_only(kv_loader *l)
{
    l->check_only = true;
}

void kv_loader_free(kv_loader *l)
{
    if (!l)
        return;
    kv_destroy(l->s);
    kv_value_unref(l->val);
    free(l->sess);
    free(l);
}

static int fail(kv_loader *l, int err, const char *why)
{
    l->phase = PH_FAILED;
    l->err = err;
    l->why = why;
    return err;
}

size_t kv_record_header_size(size_t key_len, const kv_value *v)
{
    return 2 + key_len + REC_FIXED + (v->mode ? REC_OWNER : 0) +
           (v->changes != 1 ? REC_COUNT : 0);
}

size_t kv_record_header_put(uint8_t *out, const char *key, size_t key_len,
                            const kv_value *v)
{
    le_put16(out, (uint16_t)(key_len | (v->mode ? KV_RECORD_OWNED : 0) |
                             (v->changes != 1 ? KV_RECORD_COUNTED : 0)));
    memcpy(out + 2, key, key_len);
    uint8_t *f = out + 2 + key_len;
    le_put64(f, v->mtime_ms);
    le_put64(f + 8, v->version);
    le_put64(f + 16, v->ident);
    f += 24;
    if (v->changes != 1) {
        le_put64(f, v->changes);
        f += REC_COUNT;
    }
    if (v->mode) {
        le_put32(f, v->uid);
        le_put32(f + 4, v->gid);
        le_put32(f + 8, v->mode);
        f += REC_OWNER;
    }
    le_put32(f, v->len);
    return kv_record_header_size(key_len, v);
}

/* A record header is complete in l->rec: check it, start its value. */
static int record_start(kv_loader *l)
{
    uint16_t raw = le_get16(l->rec);
    uint16_t klen = raw & (uint16_t)~REC_FLAGS;
    bool owned = raw & KV_RECORD_OWNED;
    const char *key = (const char *)l->rec + 2;
    const uint8_t *f = l->rec + 2 + klen;
    uint64_t mtime = le_get64(f);
    uint64_t version = le_get64(f + 8);
    uint64_t ident = le_get64(f + 16);
    uint64_t changes = 1;
    if (raw & KV_RECORD_COUNTED) {
        changes = le_get64(f + 24);
        f += REC_COUNT;
        if (changes < 2)
            return fail(l, -EINVAL, "a counted record with a change "
                        "count below 2");
    }
    uint32_t uid = 0, gid = 0, mode = 0;
    if (owned) {
        uid = le_get32(f + 24);
        gid = le_get32(f + 28);
        mode = le_get32(f + 32);
        f += REC_OWNER;
    }
    uint32_t vlen = le_get32(f + 24);
    bool dir = klen > 0 && key[klen - 1] == '/';
    if (owned && (mode & ~(KV_MODE_PERM | KV_MODE_DIR | KV_MODE_FILE) ||
                  (mode & ~KV_MODE_PERM) != (dir ? KV_MODE_DIR : KV_MODE_FILE)))
        return fail(l, -EINVAL, "an owner record with an impossible mode");
    if (kv_key_check(key, klen) != 0)
        return fail(l, -EINVAL, "a key outside the key rule");
    if (ident == 0)
        return fail(l, -EINVAL, "a value without identity");
    if (vlen > KV_MAX_VALUE)
        return fail(l, -EINVAL, "a value longer than KV_MAX_VALUE");
    if (l->has_prev) {
        size_t m = klen < l->key_len ? klen : l->key_len;
        int c = memcmp(l->key, key, m);
        if (c > 0 || (c == 0 && l->key_len >= klen))
            return fail(l, -EINVAL, "keys not strictly ascending");
    }
    l->val = kv_value_new(NULL, vlen, NULL, 0, mtime, version, ident);
    if (!l->val)
        return fail(l, -ENOMEM, "out of memory");
    l->val->changes = changes;
    l->val->uid = uid;
    l->val->gid = gid;
    l->val->mode = mode;
    memcpy(l->key, key, klen);
    l->key_len = klen;
    l->has_prev = true;
    l->val_have = 0;
    l->phase = PH_VALUE;
    return 0;
}

static int record_end(kv_loader *l)
{
    kv_value *v = l->val;
    l->val = NULL;
    /* strictly ascending keys (checked in record_start) are new keys,
     * each after every key already in the map */
    int rc;
    if (l->check_only) {
        rc = kv_tally_record(l->s, l->key, l->key_len, v);
        kv_value_unref(v);
    } else {
        rc = kv_append_new(l->s, l->key, l->key_len, v, l->tail);
    }
    if (rc)
        return fail(l, rc, "out of memory");
    l->keys++;
    l->rec_have = 0;
    l->phase = l->keys == l->count ? PH_DONE : PH_REC;
    return 0;
}

static int sessions_end(kv_loader *l)
{
    int rc = kv_sessions_decode(kv_session_table(l->s), l->sess, l->sess_len);
    free(l->sess);
    l->sess = NULL;
    l->sess_cap = l->sess_have = 0;
    if (rc)
        return fail(l, rc == -ENOMEM ? -ENOMEM : -EINVAL,
                    "a malformed session table");
    l->phase = l->count ? PH_REC : PH_DONE;
    return 0;
}

int kv_loader_feed(kv_loader *l, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t take = 0;
        int rc = 0;
        switch (l->phase) {
        case PH_HEAD:
            take = LOADER_HEAD - l->rec_have;
            take = take < len ? take : len;
            memcpy(l->head + l->rec_have, p, take);
            l->rec_have += take;
            if (l->rec_have == LOADER_HEAD) {
                l->rec_have = 0;
                l->count = le_get64(l->head);
                l->sess_len = le_get64(l->head + 8);
                if (l->sess_len < 12 || l->sess_len > KV_SESSIONS_MAX_BYTES)
                    return fail(l, -EINVAL, "a session table of impossible "
                                "length");
                l->phase = PH_SESS;
            }
            break;
        case PH_SESS: {
            uint64_t left = l->sess_len - l->sess_have;
            take = left < len ? (size_t)left : len;
            if (l->sess_have + take > l->sess_cap) {
                uint8_t *b = chain_grow(l->sess, &l->sess_cap,
                                        l->sess_have + take, 1, 4096);
                if (!b)
                    return fail(l, -ENOMEM, "out of memory");
                l->sess = b;
            }
            memcpy(l->sess + l->sess_have, p, take);
            l->sess_have += take;
            if (l->sess_have == l->sess_len)
                rc = sessions_end(l);
            break;
        }
        case PH_REC: {
            size_t need = 2;
            if (l->rec_have >= 2) {
                uint16_t raw = le_get16(l->rec);
                uint16_t klen = raw & (uint16_t)~REC_FLAGS;
                if (klen == 0 || klen > KV_MAX_KEY)
                    return fail(l, -EINVAL, "a key outside the key rule");
                need = 2 + (size_t)klen + REC_FIXED +
                       ((raw & KV_RECORD_OWNED) ? REC_OWNER : 0) +
                       ((raw & KV_RECORD_COUNTED) ? REC_COUNT : 0);
            }
            take = need - l->rec_have;
            take = take < len ? take : len;
            memcpy(l->rec + l->rec_have, p, take);
            l->rec_have += take;
            if (l->rec_have == need && need > 2) {
                rc = record_start(l);
                if (rc == 0 && l->val->len == 0)
                    rc = record_end(l);
            }
            break;
        }
        case PH_VALUE: {
            uint32_t left = l->val->len - l->val_have;
            take = left < len ? left : len;
            memcpy(l->val->data + l->val_have, p, take);
            l->val_have += (uint32_t)take;
            if (l->val_have == l->val->len)
                rc = record_end(l);
            break;
        }
        case PH_DONE:
            return fail(l, -EINVAL, "bytes after the last key");
        case PH_FAILED:
            return l->err;
        }
        if (rc)
            return rc;
        p += take;
        len -= take;
        l->consumed += take;
    }
    return 0;
}

int kv_loader_finish(kv_loader *l, uint64_t applied, kv **out)
{
    if (l->phase == PH_FAILED)
        return l->err;
    if (l->phase != PH_DONE)
        return fail(l, -EINVAL, l->phase == PH_HEAD || l->phase == PH_SESS
                    ? "the payload ends inside its header"
                    : "the payload ends before its last key");
    kv_set_applied(l->s, applied);
    *out = l->s;
    l->s = NULL;
    l->phase = PH_FAILED;          /* nothing more to give */
    l->err = -EINVAL;
    l->why = "already finished";
    return 0;
}

uint64_t kv_loader_keys(const kv_loader *l)
{
    return l->keys;
}

uint64_t kv_loader_consumed(const kv_loader *l)
{
    return l->consumed;
}

const char *kv_loader_error(const kv_loader *l)
{
    return l->why ? l->why : "";
}

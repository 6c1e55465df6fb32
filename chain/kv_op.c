/*
 * kv_op.c - owns the op encoding of kv.h (encoders, sizes, the decoder)
 * and the rule for which keys may be stored.
 *
 * Layout: see kv.h (op byte, u16 key length, key, then per op a u32 value
 * length + value or a u16 target length + target; COND: kind, u16 key
 * length, key, u64 argument, then one plain op).
 *
 * Invariants:
 *   1. kv_op_decode accepts exactly what the encoders produce: the op must
 *      fill `len` exactly, with no trailing bytes, and every key must pass
 *      kv_path_check; a value may not exceed KV_MAX_VALUE.
 *   2. kv_key_check is the one rule for which keys exist (kv_path_check
 *      for the paths ops name: no '/' at the end), applied by every
 *      replica to every committed op (kv.c): a key is a path the mount
 *      can show, so an op that names anything else (forged, or from an
 *      older encoder) is a no-op with the same result everywhere.
 *   3. Errors are precise (DESIGN.md invariant 6): -ENAMETOOLONG for a key
 *      or component that is too long, -EFBIG for a value that is too big,
 *      -EINVAL for everything else that is malformed.  These are the
 *      results a client sees for an op that was committed but refused.
 */
#include "kv_int.h"

#include <errno.h>
#include <string.h>

#include "chain_int.h"

#define OWNER_HEADER 13u
#define SETATTR_TAIL 21u       /* mask, uid, gid, perm, mtime */

/* One component of a path: 1..KV_MAX_NAME bytes, no '/' or NUL, not "."
 * or "..". */
static int name_check(const char *p, size_t len)
{
    if (len == 0)
        return -EINVAL;
    if (len > KV_MAX_NAME)
        return -ENAMETOOLONG;
    if (memchr(p, '\0', len))
        return -EINVAL;
    if (p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.')))
        return -EINVAL;            /* "." and ".." name no file */
    return 0;
}

int kv_path_check(const char *key, size_t len)
{
    if (!key || len == 0)
        return -EINVAL;
    if (len > KV_MAX_PATH)
        return -ENAMETOOLONG;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && key[i] != '/')
            continue;
        int rc = name_check(key + start, i - start);
        if (rc)
            return rc;             /* also an empty component: "a//b" */
        if (start == 0 &&
            ((i == sizeof KV_NAME_CHAIN - 1 &&
              memcmp(key, KV_NAME_CHAIN, i) == 0) ||
             (i == sizeof KV_NAME_STATUS - 1 &&
              memcmp(key, KV_NAME_STATUS, i) == 0) ||
             (i == sizeof KV_NAME_CLUSTER - 1 &&
              memcmp(key, KV_NAME_CLUSTER, i) == 0)))
            return -EINVAL;        /* the mount's own files */
        start = i + 1;
    }
    return 0;
}

int kv_key_check(const char *key, size_t len)
{
    if (key && len > 1 && key[len - 1] == '/')
        return kv_path_check(key, len - 1);    /* a directory */
    return kv_path_check(key, len);
}

size_t kv_op_size_put(size_t key_len, uint32_t val_len)
{
    return 3 + key_len + 4 + (size_t)val_len;
}

size_t kv_op_size_del(size_t key_len)
{
    return 3 + key_len;
}

size_t kv_op_size_rename(size_t from_len, size_t to_len)
{
    return 3 + from_len + 2 + to_len;
}

size_t kv_op_size_renamex(size_t from_len, size_t to_len)
{
    return kv_op_size_rename(from_len, to_len) + 1;
}

size_t kv_op_size_setattr(size_t key_len)
{
    return 3 + key_len + SETATTR_TAIL;
}

size_t kv_op_size_owner(size_t inner_len)
{
    return OWNER_HEADER + inner_len;
}

size_t kv_op_size_cond(size_t key_len, size_t inner_len)
{
    return 12 + key_len + inner_len;
}

static int64_t encode_value_op(uint8_t type, uint8_t *buf, size_t cap,
                               const char *key, size_t key_len,
                               const uint8_t *val, uint32_t val_len)
{
    int rc = kv_path_check(key, key_len);
    if (rc)
        return rc;
    if (val_len > KV_MAX_VALUE)
        return -EFBIG;
    if (val_len && !val)
        return -EINVAL;
    size_t need = kv_op_size_put(key_len, val_len);
    if (!buf || cap < need)
        return -ENOSPC;
    buf[0] = type;
    le_put16(buf + 1, (uint16_t)key_len);
    memcpy(buf + 3, key, key_len);
    le_put32(buf + 3 + key_len, val_len);
    if (val_len)
        memcpy(buf + 7 + key_len, val, val_len);
    return (int64_t)need;
}

int64_t kv_op_encode_put(uint8_t *buf, size_t cap, const char *key,
                         size_t key_len, const uint8_t *val, uint32_t val_len)
{
    return encode_value_op(KV_OP_PUT, buf, cap, key, key_len, val, val_len);
}

int64_t kv_op_encode_append(uint8_t *buf, size_t cap, const char *key,
                            size_t key_len, const uint8_t *val,
                            uint32_t val_len)
{
    return encode_value_op(KV_OP_APPEND, buf, cap, key, key_len, val,
                           val_len);
}

static int64_t encode_path_op(uint8_t type, uint8_t *buf, size_t cap,
                              const char *key, size_t key_len)
{
    int rc = kv_path_check(key, key_len);
    if (rc)
        return rc;
    size_t need = kv_op_size_del(key_len);
    if (!buf || cap < need)
        return -ENOSPC;
    buf[0] = type;
    le_put16(buf + 1, (uint16_t)key_len);
    memcpy(buf + 3, key, key_len);
    return (int64_t)need;
}

int64_t kv_op_encode_del(uint8_t *buf, size_t cap, const char *key,
                         size_t key_len)
{
    return encode_path_op(KV_OP_DEL, buf, cap, key, key_len);
}

int64_t kv_op_encode_mkdir(uint8_t *buf, size_t cap, const char *key,
                           size_t key_len)
{
    return encode_path_op(KV_OP_MKDIR, buf, cap, key, key_len);
}

int64_t kv_op_encode_rmdir(uint8_t *buf, size_t cap, const char *key,
                           size_t key_len)
{
    return encode_path_op(KV_OP_RMDIR, buf, cap, key, key_len);
}

static int64_t encode_rename(uint8_t type, uint8_t *buf, size_t cap,
                             const char *from, size_t from_len,
                             const char *to, size_t to_len, uint8_t flags)
{
    int rc = kv_path_check(from, from_len);
    if (!rc)
        rc = kv_path_check(to, to_len);
    if (rc)
        return rc;
    if (type == KV_OP_RENAMEX && (flags & ~KV_RENAME_FLAGS ||
                                  flags == KV_RENAME_FLAGS))
        return -EINVAL;
    size_t need = type == KV_OP_RENAMEX ? kv_op_size_renamex(from_len, to_len)
                                        : kv_op_size_rename(from_len, to_len);
    if (!buf || cap < need)
        return -ENOSPC;
    buf[0] = type;
    le_put16(buf + 1, (uint16_t)from_len);
    memcpy(buf + 3, from, from_len);
    le_put16(buf + 3 + from_len, (uint16_t)to_len);
    memcpy(buf + 5 + from_len, to, to_len);
    if (type == KV_OP_RENAMEX)
        buf[5 + from_len + to_len] = flags;
    return (int64_t)need;
}

int64_t kv_op_encode_rename(uint8_t *buf, size_t cap, const char *from,
                            size_t from_len, const char *to, size_t to_len)
{
    return encode_rename(KV_OP_RENAME, buf, cap, from, from_len, to, to_len,
                         0);
}

int64_t kv_op_encode_renamex(uint8_t *buf, size_t cap, const char *from,
                             size_t from_len, const char *to, size_t to_len,
                             uint8_t flags)
{
    return encode_rename(KV_OP_RENAMEX, buf, cap, from, from_len, to, to_len,
                         flags);
}

int64_t kv_op_encode_setattr(uint8_t *buf, size_t cap, const char *key,
                             size_t key_len, uint8_t mask, uint32_t uid,
                             uint32_t gid, uint32_t perm, uint64_t mtime_ms)
{
    int rc = kv_path_check(key, key_len);
    if (rc)
        return rc;
    if (!mask || (mask & ~KV_ATTR_MASK) ||
        ((mask & KV_ATTR_MTIME) && (mask & KV_ATTR_MTIME_NOW)) ||
        (perm & ~KV_MODE_PERM))
        return -EINVAL;
    if (!(mask & KV_ATTR_OWNER))
        uid = gid = perm = 0;
    if (!(mask & KV_ATTR_MTIME))
        mtime_ms = 0;
    size_t need = kv_op_size_setattr(key_len);
    if (!buf || cap < need)
        return -ENOSPC;
    buf[0] = KV_OP_SETATTR;
    le_put16(buf + 1, (uint16_t)key_len);
    memcpy(buf + 3, key, key_len);
    uint8_t *p = buf + 3 + key_len;
    p[0] = mask;
    le_put32(p + 1, uid);
    le_put32(p + 5, gid);
    le_put32(p + 9, perm);
    le_put64(p + 13, mtime_ms);
    return (int64_t)need;
}

int64_t kv_op_encode_owner(uint8_t *buf, size_t cap, uint32_t uid,
                           uint32_t gid, uint32_t perm, const uint8_t *inner,
                           size_t inner_len)
{
    kv_op op;
    if (!inner || inner_len < 3 || inner_len > UINT32_MAX ||
        (perm & ~KV_MODE_PERM) || inner[0] == KV_OP_OWNER ||
        kv_op_decode(inner, (uint32_t)inner_len, &op) != 0 ||
        (op.type != KV_OP_PUT && op.type != KV_OP_APPEND &&
         op.type != KV_OP_MKDIR))
        return -EINVAL;
    size_t need = kv_op_size_owner(inner_len);
    if (!buf || cap < need)
        return -ENOSPC;
    memmove(buf + OWNER_HEADER, inner, inner_len);
    buf[0] = KV_OP_OWNER;
    le_put32(buf + 1, uid);
    le_put32(buf + 5, gid);
    le_put32(buf + 9, perm);
    return (int64_t)need;
}

int64_t kv_op_encode_cond(uint8_t *buf, size_t cap, uint8_t kind,
                          const char *key, size_t key_len, uint64_t arg,
                          const uint8_t *inner, size_t inner_len)
{
    if (kind < KV_COND_ABSENT || kind > KV_COND_VERSION ||
        (kind == KV_COND_ABSENT && arg != 0) || !inner || inner_len < 3 ||
        inner[0] == KV_OP_COND)
        return -EINVAL;
    int rc = kv_path_check(key, key_len);
    if (rc)
        return rc;
    size_t need = kv_op_size_cond(key_len, inner_len);
    if (!buf || cap < need)
        return -ENOSPC;
    /* `inner` may lie at the start of `buf` (wrapping in place) */
    memmove(buf + 12 + key_len, inner, inner_len);
    buf[0] = KV_OP_COND;
    buf[1] = kind;
    le_put16(buf + 2, (uint16_t)key_len);
    memcpy(buf + 4, key, key_len);
    le_put64(buf + 4 + key_len, arg);
    return (int64_t)need;
}

static int decode_plain(const uint8_t *buf, uint32_t len, kv_op *op);
static int decode_cond(const uint8_t *buf, uint32_t len, kv_op *op);


int kv_op_decode(const uint8_t *buf, uint32_t len, kv_op *op)
{
    if (!buf || !op || len < 3)
        return -EINVAL;
    memset(op, 0, sizeof *op);
    if (buf[0] != KV_OP_OWNER)
        return decode_cond(buf, len, op);
    /* OWNER: uid, gid, permission bits, then a creating op */
    if (len < OWNER_HEADER + 3)
        return -EINVAL;
    uint32_t uid = le_get32(buf + 1), gid = le_get32(buf + 5);
    uint32_t perm = le_get32(buf + 9);
    if (perm & ~KV_MODE_PERM || buf[OWNER_HEADER] == KV_OP_OWNER)
        return -EINVAL;
    int rc = decode_cond(buf + OWNER_HEADER, len - OWNER_HEADER, op);
    if (rc)
        return rc;
    if (op->type != KV_OP_PUT && op->type != KV_OP_APPEND &&
        op->type != KV_OP_MKDIR)
        return -EINVAL;
    op->has_owner = true;
    op->uid = uid;
    op->gid = gid;
    op->perm = perm;
    return 0;
}

static int decode_cond(const uint8_t *buf, uint32_t len, kv_op *op)
{
    if (len < 3)
        return -EINVAL;
    if (buf[0] != KV_OP_COND)
        return decode_plain(buf, len, op);
    /* COND: condition header, then one plain op filling the rest */
    if (len < 12)
        return -EINVAL;
    uint8_t kind = buf[1];
    uint16_t klen = le_get16(buf + 2);
    uint64_t pos = 4 + (uint64_t)klen + 8;
    if (kind < KV_COND_ABSENT || kind > KV_COND_VERSION || klen == 0 ||
        pos + 3 > len || buf[pos] == KV_OP_COND)
        return -EINVAL;
    uint64_t arg = le_get64(buf + 4 + klen);
    if (kind == KV_COND_ABSENT && arg != 0)
        return -EINVAL;
    int rc = kv_path_check((const char *)buf + 4, klen);
    if (rc)
        return rc;
    rc = decode_plain(buf + pos, (uint32_t)(len - pos), op);
    if (rc)
        return rc;
    op->cond_kind = kind;
    op->cond_key = (const char *)buf + 4;
    op->cond_key_len = klen;
    op->cond_arg = arg;
    return 0;
}

static int decode_plain(const uint8_t *buf, uint32_t len, kv_op *op)
{
    int rc;

    if (len < 3)
        return -EINVAL;
    op->type = buf[0];
    op->key_len = le_get16(buf + 1);
    op->key = (const char *)buf + 3;
    uint64_t pos = 3 + (uint64_t)op->key_len;
    if (op->key_len == 0 || pos > len)
        return -EINVAL;
    switch (op->type) {
    case KV_OP_PUT:
    case KV_OP_APPEND:
        if (pos + 4 > len)
            return -EINVAL;
        op->value_len = le_get32(buf + pos);
        op->value = buf + pos + 4;
        if (pos + 4 + op->value_len != len)
            return -EINVAL;
        if (op->value_len > KV_MAX_VALUE)
            return -EFBIG;
        break;
    case KV_OP_DEL:
    case KV_OP_MKDIR:
    case KV_OP_RMDIR:
        if (pos != len)
            return -EINVAL;
        break;
    case KV_OP_SETATTR:
        if (pos + SETATTR_TAIL != len)
            return -EINVAL;
        op->attr_mask = buf[pos];
        op->uid = le_get32(buf + pos + 1);
        op->gid = le_get32(buf + pos + 5);
        op->perm = le_get32(buf + pos + 9);
        op->mtime_ms = le_get64(buf + pos + 13);
        if (!op->attr_mask || (op->attr_mask & ~KV_ATTR_MASK) ||
            ((op->attr_mask & KV_ATTR_MTIME) &&
             (op->attr_mask & KV_ATTR_MTIME_NOW)) ||
            (op->perm & ~KV_MODE_PERM) ||
            (!(op->attr_mask & KV_ATTR_OWNER) &&
             (op->uid || op->gid || op->perm)) ||
            (!(op->attr_mask & KV_ATTR_MTIME) && op->mtime_ms))
            return -EINVAL;
        break;
    case KV_OP_RENAME:
    case KV_OP_RENAMEX: {
        uint64_t tail = op->type == KV_OP_RENAMEX ? 1 : 0;
        if (pos + 2 > len)
            return -EINVAL;
        op->key2_len = le_get16(buf + pos);
        op->key2 = (const char *)buf + pos + 2;
        if (op->key2_len == 0 || pos + 2 + op->key2_len + tail != len)
            return -EINVAL;
        if (tail) {
            op->flags = buf[len - 1];
            if ((op->flags & ~KV_RENAME_FLAGS) ||
                op->flags == KV_RENAME_FLAGS)
                return -EINVAL;
        }
        rc = kv_path_check(op->key2, op->key2_len);
        if (rc)
            return rc;
        break;
    }
    default:
        return -EINVAL;
    }
    return kv_path_check(op->key, op->key_len);
}

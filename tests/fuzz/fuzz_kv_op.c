/*
 * fuzz_kv_op.c - libFuzzer target for the key-value op decoder
 * (chain/kv_op.c): the op bytes of one client request, as the state
 * machine and the `.chain/<n>` renderer decode them.
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. kv_op_decode fails only with -EINVAL, -ENAMETOOLONG or -EFBIG;
 *   P3. whatever decodes re-encodes, through the encoder of its type (a
 *       COND: the guarded op's, wrapped by kv_op_encode_cond), to the
 *       same bytes, of the size kv_op_size_* gives (canonical), and
 *       points only inside the input;
 *   P4. applied in a batch, the op answers the decoder's error when it
 *       does not decode, and otherwise does what it says (a PUT stores
 *       its value, a DEL of a missing key is -ENOENT, a COND on an
 *       identity or version fails with -ESTALE on the empty map, a PUT
 *       or MKDIR of a path below a directory is -ENOENT there, ...).
 */
#include "fuzz_util.h"

#include "../../chain/kv.h"
#include "../../base/entry.h"

static int32_t last_result;

static void on_result(void *arg, uint64_t client_id, uint64_t seq,
                      int32_t result, uint64_t slot)
{
    (void)arg;
    (void)client_id;
    (void)seq;
    (void)slot;
    last_result = result;
}

/* P3 */
static void check_reencode(const uint8_t *buf, uint32_t len, const kv_op *op)
{
    uint8_t *re = malloc(len + 1);
    CHECK(re != NULL);
    int64_t n = -1;
    size_t want = 0;
    CHECK((const uint8_t *)op->key >= buf &&
          (const uint8_t *)op->key + op->key_len <= buf + len);
    switch (op->type) {
    case KV_OP_PUT:
    case KV_OP_APPEND:
        CHECK(op->value >= buf && op->value + op->value_len <= buf + len);
        n = (op->type == KV_OP_PUT ? kv_op_encode_put : kv_op_encode_append)(
            re, len, op->key, op->key_len, op->value, op->value_len);
        want = kv_op_size_put(op->key_len, op->value_len);
        break;
    case KV_OP_DEL:
        n = kv_op_encode_del(re, len, op->key, op->key_len);
        want = kv_op_size_del(op->key_len);
        break;
    case KV_OP_MKDIR:
    case KV_OP_RMDIR:
        n = (op->type == KV_OP_MKDIR ? kv_op_encode_mkdir : kv_op_encode_rmdir)(
            re, len, op->key, op->key_len);
        want = kv_op_size_del(op->key_len);
        break;
    case KV_OP_SETATTR:
        n = kv_op_encode_setattr(re, len, op->key, op->key_len,
                                 op->attr_mask, op->uid, op->gid, op->perm,
                                 op->mtime_ms);
        want = kv_op_size_setattr(op->key_len);
        break;
    case KV_OP_RENAMEX:
        CHECK((const uint8_t *)op->key2 >= buf &&
              (const uint8_t *)op->key2 + op->key2_len <= buf + len);
        n = kv_op_encode_renamex(re, len, op->key, op->key_len, op->key2,
                                 op->key2_len, op->flags);
        want = kv_op_size_renamex(op->key_len, op->key2_len);
        break;
    case KV_OP_RENAME:
        CHECK((const uint8_t *)op->key2 >= buf &&
              (const uint8_t *)op->key2 + op->key2_len <= buf + len);
        n = kv_op_encode_rename(re, len, op->key, op->key_len, op->key2,
                                op->key2_len);
        want = kv_op_size_rename(op->key_len, op->key2_len);
        break;
    default:
        CHECK(0);
    }
    if (op->cond_kind) {
        /* the guarded op, then its condition around it */
        CHECK(n > 0 && (size_t)n == want);
        CHECK(op->cond_key >= (const char *)buf &&
              op->cond_key + op->cond_key_len <= (const char *)buf + len);
        uint8_t *inner = malloc((size_t)n);
        CHECK(inner != NULL);
        memcpy(inner, re, (size_t)n);
        n = kv_op_encode_cond(re, len, op->cond_kind, op->cond_key,
                              op->cond_key_len, op->cond_arg, inner,
                              (size_t)n);
        want = kv_op_size_cond(op->cond_key_len, want);
        free(inner);
    }
    if (op->has_owner) {
        CHECK(n > 0 && (size_t)n == want);
        n = kv_op_encode_owner(re, len, op->uid, op->gid, op->perm, re,
                               (size_t)n);
        want = kv_op_size_owner(want);
    }
    CHECK(n == (int64_t)len && want == len);
    CHECK(memcmp(re, buf, len) == 0);
    free(re);
}

/* P4: the op as the only request of a batch. */
static void check_apply(const uint8_t *buf, uint32_t len, int dec,
                        const kv_op *op)
{
    kv *s = kv_create();
    CHECK(s != NULL);
    uint32_t blen = 4 + (uint32_t)px_batch_req_bytes(len);
    uint8_t *batch = malloc(blen);
    CHECK(batch != NULL);
    px_request q = { .client_id = 1, .seq = 1, .ack_seq = 0, .len = len,
                 .op = (uint8_t *)buf };
    px_batch_put_header(batch, 1);
    px_batch_put(batch + 4, &q);
    px_entry e = { .slot = 1, .time_ms = 9, .kind = PX_ENTRY_BATCH,
                   .len = blen, .data = batch };
    last_result = 1;
    CHECK(kv_apply_entry(s, &e, on_result, NULL) == 0);
    if (dec) {
        CHECK(last_result == dec && kv_count(s) == 0);
    } else if (op->cond_kind && op->cond_kind != KV_COND_ABSENT) {
        /* no key has an identity or a version in an empty map */
        CHECK(last_result == -ESTALE && kv_count(s) == 0);
    } else if ((op->type == KV_OP_PUT || op->type == KV_OP_APPEND ||
                op->type == KV_OP_MKDIR) &&
               memchr(op->key, '/', op->key_len)) {
        /* the empty map has no directory to hold it */
        CHECK(last_result == -ENOENT && kv_count(s) == 0);
    } else if (op->type == KV_OP_MKDIR) {
        CHECK(last_result == 0 && kv_count(s) == 1);
        CHECK(kv_get(s, op->key, op->key_len) == NULL);
    } else if (op->type == KV_OP_PUT || op->type == KV_OP_APPEND) {
        CHECK(last_result == 0 && kv_count(s) == 1);
        const kv_value *v = kv_get(s, op->key, op->key_len);
        CHECK(v != NULL && v->len == op->value_len && v->version == 1);
        CHECK(v->len == 0 || memcmp(v->data, op->value, v->len) == 0);
    } else {
        CHECK(last_result == -ENOENT && kv_count(s) == 0);
    }
    free(batch);
    kv_destroy(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    uint32_t len = (uint32_t)size;
    uint8_t *buf = fuzz_copy(data, size);
    CHECK(buf != NULL);
    kv_op op;
    int rc = kv_op_decode(buf, len, &op);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG || rc == -EFBIG);
    if (rc == 0)
        check_reencode(buf, len, &op);
    check_apply(buf, len, rc, &op);
    free(buf);
    return 0;
}

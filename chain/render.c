/*
 * render.c - owns the human-readable text of a block (/MOUNT/.chain/<n>):
 *
 *   index: 42
 *   time: 2026-11-22T16:40:01.123Z (1763829601123)
 *   prev: <64 hex>
 *   hash: <64 hex>
 *   kind: batch (3 requests)
 *   op: put key="foo" len=6 value="hello\n"
 *   ...
 *
 * Invariants:
 *   1. Output is plain printable ASCII plus '\n': keys and values are
 *      escaped (\n, \t, \\, \", \xNN for anything else not printable).
 *   2. A value preview shows at most RENDER_PREVIEW_BYTES bytes, then
 *      "..." when the value is longer.
 *   3. Rendering never fails on odd block contents: a batch or op that
 *      does not decode is shown as such ("malformed"), since the block is
 *      still part of the verified chain.
 */
#include "chain_int.h"
#include "kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RENDER_PREVIEW_BYTES 40
#define RENDER_KEY_BYTES 256      /* longer keys are shown cut, with "..." */

typedef struct text {
    char *p;
    size_t len, cap;
    int err;
} text;

static void text_reserve(text *t, size_t more)
{
    if (t->err || t->len + more + 1 <= t->cap)
        return;
    size_t cap = t->cap ? t->cap : 512;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
        t->err = -ENOMEM;
        return;
    }
    t->p = p;
    t->cap = cap;
}

static void text_printf(text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_printf(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->err = -EINVAL;
        return;
    }
    text_reserve(t, (size_t)n);
    if (t->err)
        return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* Append `len` bytes quoted and escaped, at most `max` of them. */
static void text_quoted(text *t, const uint8_t *p, size_t len, size_t max)
{
    size_t shown = len < max ? len : max;
    text_reserve(t, shown * 4 + 6);
    if (t->err)
        return;
    char *o = t->p + t->len;
    *o++ = '"';
    for (size_t i = 0; i < shown; i++) {
        uint8_t ch = p[i];
        switch (ch) {
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '"': *o++ = '\\'; *o++ = '"'; break;
        default:
            if (ch >= 0x20 && ch < 0x7f) {
                *o++ = (char)ch;
            } else {
                static const char hex[] = "0123456789abcdef";
                *o++ = '\\';
                *o++ = 'x';
                *o++ = hex[ch >> 4];
                *o++ = hex[ch & 15];
            }
        }
    }
    *o++ = '"';
    if (shown < len) {
        memcpy(o, "...", 3);
        o += 3;
    }
    *o = '\0';
    t->len = (size_t)(o - t->p);
}

static void render_op(text *t, const px_request *req)
{
    kv_op op;
    static const char *const names[] = { "?", "put", "del", "append",
                                         "rename", "?", "mkdir", "rmdir",
                                         "rename", "setattr" };
    _Static_assert(sizeof names / sizeof names[0] == KV_OP_SETATTR + 1,
                   "a name for every op type kv_op_decode gives");
    int rc = kv_op_decode(req->op, req->len, &op);
    text_printf(t, "op: ");
    if (rc) {
        text_printf(t, "malformed (%u bytes, %s)", req->len,
                    rc == -ENAMETOOLONG ? "name too long"
                    : rc == -EFBIG      ? "value too big"
                                        : "invalid");
    } else {
        if (op.has_owner)
            text_printf(t, "owner uid=%u gid=%u mode=%04o ", op.uid, op.gid,
                        op.perm);
        if (op.cond_kind) {
            static const char *const conds[] = { "?", "absent", "ident",
                                                 "version" };
            text_printf(t, "if %s key=", conds[op.cond_kind]);
            text_quoted(t, (const uint8_t *)op.cond_key, op.cond_key_len,
                        RENDER_KEY_BYTES);
            if (op.cond_kind != KV_COND_ABSENT)
                text_printf(t, " %s=%" PRIu64, conds[op.cond_kind],
                            op.cond_arg);
            text_printf(t, " then ");
        }
        text_printf(t, "%s key=", names[op.type]);
        text_quoted(t, (const uint8_t *)op.key, op.key_len, RENDER_KEY_BYTES);
        if (op.type == KV_OP_PUT || op.type == KV_OP_APPEND) {
            text_printf(t, " len=%u value=", op.value_len);
            text_quoted(t, op.value, op.value_len, RENDER_PREVIEW_BYTES);
        } else if (op.type == KV_OP_RENAME || op.type == KV_OP_RENAMEX) {
            text_printf(t, " to=");
            text_quoted(t, (const uint8_t *)op.key2, op.key2_len,
                        RENDER_KEY_BYTES);
            if (op.flags & KV_RENAME_NOREPLACE)
                text_printf(t, " noreplace");
            if (op.flags & KV_RENAME_EXCHANGE)
                text_printf(t, " exchange");
        } else if (op.type == KV_OP_SETATTR) {
            if (op.attr_mask & KV_ATTR_OWNER)
                text_printf(t, " uid=%u gid=%u mode=%04o", op.uid, op.gid,
                            op.perm);
            if (op.attr_mask & KV_ATTR_MTIME)
                text_printf(t, " mtime=%" PRIu64, op.mtime_ms);
            if (op.attr_mask & KV_ATTR_MTIME_NOW)
                text_printf(t, " mtime=now");
        }
    }
    text_printf(t, "\n");
}

static void render_batch(text *t, const chain_block *b)
{
    uint32_t off = 0, n = 0;
    px_request req;
    int r;
    /* Count first, so a malformed batch is said to be one up front. */
    while ((r = px_batch_next(b->data, b->len, &off, &req)) == 1 &&
           n <= b->len)
        n++;
    if (r < 0) {
        text_printf(t, "kind: batch (malformed, %u bytes)\n", b->len);
        return;
    }
    text_printf(t, "kind: batch (%u request%s)\n", n, n == 1 ? "" : "s");
    off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (px_batch_next(b->data, b->len, &off, &req) != 1)
            break;
        render_op(t, &req);
    }
}

int chain_block_render(const chain_block *b, char **text_out, uint32_t *len)
{
    text t = { 0 };
    char prev[2 * CHAIN_HASH_BYTES + 1], hash[2 * CHAIN_HASH_BYTES + 1];
    char when[64] = "invalid";

    if (!b || !text_out || !len || (b->len && !b->data))
        return -EINVAL;
    time_t secs = (time_t)(b->time_ms / 1000);
    struct tm tm;
    if (b->time_ms / 1000 <= (uint64_t)INT32_MAX * 64 && gmtime_r(&secs, &tm))
        snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (unsigned)(b->time_ms % 1000));
    chain_hex(b->prev_hash, CHAIN_HASH_BYTES, prev);
    chain_hex(b->hash, CHAIN_HASH_BYTES, hash);
    text_printf(&t, "index: %llu\ntime: %s (%llu)\nprev: %s\nhash: %s\n",
                (unsigned long long)b->index, when,
                (unsigned long long)b->time_ms, prev, hash);
    switch (b->kind) {
    case PX_ENTRY_NOOP:
        text_printf(&t, "kind: noop (fills a slot left empty by a leader change)\n");
        break;
    case PX_ENTRY_CONFIG: {
        px_members m;
        const uint8_t *ctx;
        uint32_t ctx_len;
        if (px_config_decode(b->data, b->len, &m, &ctx, &ctx_len) < 0) {
            text_printf(&t, "kind: config (malformed, %u bytes)\n", b->len);
            break;
        }
        text_printf(&t, "kind: config (membership change)\nvoters:");
        for (uint32_t i = 0; i < m.n_voters && i < PX_MAX_MEMBERS; i++)
            text_printf(&t, " %u", m.voters[i]);
        text_printf(&t, "\nlearners:");
        for (uint32_t i = 0; i < m.n_learners && i < PX_MAX_MEMBERS; i++)
            text_printf(&t, " %u", m.learners[i]);
        text_printf(&t, "\n");
        if (ctx_len) {   /* the host's note: addresses, then (on a line
                            of its own) what changed and who asked */
            const uint8_t *nl = memchr(ctx, '\n', ctx_len);
            uint32_t first = nl ? (uint32_t)(nl - ctx) : ctx_len;
            text_printf(&t, "context: ");
            text_quoted(&t, ctx, first, PX_CONFIG_MAX_CONTEXT);
            text_printf(&t, "\n");
            if (nl) {
                text_printf(&t, "change: ");
                text_quoted(&t, nl + 1, ctx_len - first - 1,
                            PX_CONFIG_MAX_CONTEXT);
                text_printf(&t, "\n");
            }
        }
        break;
    }
    case PX_ENTRY_BATCH:
        render_batch(&t, b);
        break;
    case PX_ENTRY_CHECKPOINT: {
        px_checkpoint c;
        if (px_checkpoint_decode(b->data, b->len, &c) < 0) {
            text_printf(&t, "kind: checkpoint (malformed, %u bytes)\n", b->len);
            break;
        }
        char dg[2 * PX_DIGEST_BYTES + 1];
        chain_hex(c.digest, PX_DIGEST_BYTES, dg);
        text_printf(&t, "kind: checkpoint (state digest of a snapshot; every "
                    "node compares its own)\nat: %llu\ndigest: %s\n",
                    (unsigned long long)c.index, dg);
        break;
    }
    default:
        text_printf(&t, "kind: unknown (%u, %u bytes)\n", b->kind, b->len);
    }
    if (t.err || t.len > UINT32_MAX) {
        free(t.p);
        return t.err ? t.err : -EFBIG;
    }
    *text_out = t.p;
    *len = (uint32_t)t.len;
    return 0;
}

/*
 * entry.c - owns the encodings of entry values (entry.h).
 *
 * PX_ENTRY_BATCH:
 *   offset  size  meaning
 *   0       4     count, little-endian
 *   4       ...   count records:
 *                   +0  8  client_id
 *                   +8  8  seq
 *                   +16 8  ack_seq
 *                   +24 4  len
 *                   +28 len op bytes
 *
 * Invariants:
 *   1. px_batch_next validates the whole batch when *offset == 0 (count
 *      records, exact length) before handing out the first request, so a
 *      malformed batch yields -EINVAL and never a partial iteration.
 *   2. The encoder writes exactly px_batch_req_bytes(len) per record.
 *
 * PX_ENTRY_CONFIG, little-endian:
 *   offset        size          meaning
 *   0             4             n_voters (1..PX_MAX_MEMBERS)
 *   4             4*n_voters    voter ids
 *   4+4v          4             n_learners
 *   8+4v          4*n_learners  learner ids
 *   3. A decoded configuration is valid (px_members_valid).
 *
 * PX_ENTRY_CHECKPOINT, little-endian, exactly 40 bytes:
 *   offset  size  meaning
 *   0       8     index (>= 1): the applied index the digest is of
 *   8       32    state digest at that index (chain/kv.h kv_digest)
 *   4. A decoded checkpoint has the exact length and a non-zero index.
 */
#include "entry.h"

#include <errno.h>
#include <string.h>

#include "le.h"

#define PX_BATCH_HEADER 4u
#define PX_BATCH_REC_HEADER 28u
_Static_assert(PX_BATCH_HEADER == LIMIT_BATCH_HEADER &&
               PX_BATCH_REC_HEADER == LIMIT_REQUEST_HEADER,
               "base/limits.h counts the batch format right");

/* Walk the batch; returns the count or -EINVAL. */
static int64_t px_batch_validate(const uint8_t *data, uint32_t len)
{
    if (!data || len < PX_BATCH_HEADER)
        return -EINVAL;
    uint32_t count = le_get32(data);
    uint64_t off = PX_BATCH_HEADER;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < PX_BATCH_REC_HEADER)
            return -EINVAL;
        uint32_t op_len = le_get32(data + off + 24);
        off += PX_BATCH_REC_HEADER;
        if (len - off < op_len)
            return -EINVAL;
        off += op_len;
    }
    if (off != len)
        return -EINVAL;
    return count;
}

int px_batch_next(const uint8_t *data, uint32_t len, uint32_t *offset,
                  px_request *req)
{
    if (!offset || !req)
        return -EINVAL;
    if (*offset == 0) {
        if (px_batch_validate(data, len) < 0)
            return -EINVAL;
        *offset = PX_BATCH_HEADER;
    }
    if (*offset == len)
        return 0;
    if (*offset > len || len - *offset < PX_BATCH_REC_HEADER)
        return -EINVAL;
    const uint8_t *p = data + *offset;
    uint32_t op_len = le_get32(p + 24);
    if (len - *offset - PX_BATCH_REC_HEADER < op_len)
        return -EINVAL;
    req->client_id = le_get64(p);
    req->seq = le_get64(p + 8);
    req->ack_seq = le_get64(p + 16);
    req->len = op_len;
    req->op = op_len ? p + PX_BATCH_REC_HEADER : NULL;
    *offset += PX_BATCH_REC_HEADER + op_len;
    return 1;
}

uint32_t px_batch_count(const uint8_t *data, uint32_t len)
{
    int64_t n = px_batch_validate(data, len);
    return n < 0 ? 0 : (uint32_t)n;
}

uint64_t px_batch_req_bytes(uint32_t op_len)
{
    return (uint64_t)PX_BATCH_REC_HEADER + op_len;
}

void px_batch_put_header(uint8_t *buf, uint32_t count)
{
    le_put32(buf, count);
}

uint32_t px_batch_put(uint8_t *buf, const px_request *q)
{
    le_put64(buf, q->client_id);
    le_put64(buf + 8, q->seq);
    le_put64(buf + 16, q->ack_seq);
    le_put32(buf + 24, q->len);
    if (q->len)
        memcpy(buf + PX_BATCH_REC_HEADER, q->op, q->len);
    return PX_BATCH_REC_HEADER + q->len;
}

bool px_members_valid(const px_members *m)
{
    if (m->n_voters < 1 || m->n_voters > PX_MAX_MEMBERS ||
        m->n_learners > PX_MAX_MEMBERS ||
        m->n_voters + m->n_learners > PX_MAX_MEMBERS)
        return false;
    uint32_t all[2 * PX_MAX_MEMBERS];
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_voters; i++)
        all[n++] = m->voters[i];
    for (uint32_t i = 0; i < m->n_learners; i++)
        all[n++] = m->learners[i];
    for (uint32_t i = 0; i < n; i++) {
        if (all[i] == 0)
            return false;
        for (uint32_t j = i + 1; j < n; j++)
            if (all[i] == all[j])
                return false;
    }
    return true;
}

int px_members_encode(const px_members *m, uint8_t *buf, uint32_t cap)
{
    if (!m || !px_members_valid(m))
        return -EINVAL;
    uint32_t need = 8 + 4 * (m->n_voters + m->n_learners);
    if (!buf || cap < need)
        return -ENOSPC;
    uint8_t *p = buf;
    le_put32(p, m->n_voters);
    p += 4;
    for (uint32_t i = 0; i < m->n_voters; i++, p += 4)
        le_put32(p, m->voters[i]);
    le_put32(p, m->n_learners);
    p += 4;
    for (uint32_t i = 0; i < m->n_learners; i++, p += 4)
        le_put32(p, m->learners[i]);
    return (int)need;
}

/* The members encoding at the start of buf: its length in bytes, or
 * -EINVAL. */
static int members_prefix(const uint8_t *buf, uint32_t len, px_members *m)
{
    if (!buf || !m || len < 8)
        return -EINVAL;
    px_members t;
    memset(&t, 0, sizeof(t));
    t.n_voters = le_get32(buf);
    if (t.n_voters > PX_MAX_MEMBERS || len < 8 + 4 * t.n_voters)
        return -EINVAL;
    for (uint32_t i = 0; i < t.n_voters; i++)
        t.voters[i] = le_get32(buf + 4 + 4 * i);
    const uint8_t *p = buf + 4 + 4 * t.n_voters;
    t.n_learners = le_get32(p);
    if (t.n_learners > PX_MAX_MEMBERS ||
        len < 8 + 4 * (t.n_voters + t.n_learners))
        return -EINVAL;
    for (uint32_t i = 0; i < t.n_learners; i++)
        t.learners[i] = le_get32(p + 4 + 4 * i);
    if (!px_members_valid(&t))
        return -EINVAL;
    *m = t;
    return (int)(8 + 4 * (t.n_voters + t.n_learners));
}

int px_members_decode(const uint8_t *buf, uint32_t len, px_members *m)
{
    px_members t;
    int n = members_prefix(buf, len, &t);
    if (n < 0 || (uint32_t)n != len)
        return -EINVAL;
    *m = t;
    return 0;
}

int px_config_encode(const px_members *m, const uint8_t *context,
                     uint32_t context_len, uint8_t *buf, uint32_t cap)
{
    if (context_len > PX_CONFIG_MAX_CONTEXT || (context_len && !context))
        return -EINVAL;
    int n = px_members_encode(m, buf, cap);
    if (n < 0 || context_len == 0)
        return n;
    if (cap - (uint32_t)n < 4 + context_len)
        return -ENOSPC;
    le_put32(buf + n, context_len);
    memcpy(buf + n + 4, context, context_len);
    return n + 4 + (int)context_len;
}

int px_config_decode(const uint8_t *buf, uint32_t len, px_members *m,
                     const uint8_t **context, uint32_t *context_len)
{
    px_members t;
    int n = members_prefix(buf, len, &t);
    if (n < 0)
        return -EINVAL;
    uint32_t rest = len - (uint32_t)n, clen = 0;
    if (rest) {
        if (rest < 4)
            return -EINVAL;
        clen = le_get32(buf + n);
        if (clen == 0 || clen > PX_CONFIG_MAX_CONTEXT || clen != rest - 4)
            return -EINVAL;
    }
    *m = t;
    if (context)
        *context = clen ? buf + n + 4 : NULL;
    if (context_len)
        *context_len = clen;
    return 0;
}

int px_checkpoint_encode(const px_checkpoint *c, uint8_t *buf, uint32_t cap)
{
    if (!c || c->index == 0)
        return -EINVAL;
    if (!buf || cap < PX_CHECKPOINT_BYTES)
        return -ENOSPC;
    le_put64(buf, c->index);
    memcpy(buf + 8, c->digest, PX_DIGEST_BYTES);
    return (int)PX_CHECKPOINT_BYTES;
}

int px_checkpoint_decode(const uint8_t *buf, uint32_t len, px_checkpoint *c)
{
    if (!buf || !c || len != PX_CHECKPOINT_BYTES)
        return -EINVAL;
    uint64_t index = le_get64(buf);
    if (index == 0)
        return -EINVAL;
    c->index = index;
    memcpy(c->digest, buf + 8, PX_DIGEST_BYTES);
    return 0;
}

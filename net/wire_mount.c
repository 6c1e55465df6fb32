/*
 * wire_mount.c - MOUNT_REQ and MOUNT_MSG frames (net/wire_mount.h has the
 * layouts and the rules).  One check per op serves the encoder (-EINVAL
 * for a rule broken) and the decoder (-EBADMSG), so whatever encodes also
 * decodes and the other way round.
 */
#include "wire_mount.h"

#include <errno.h>

#include "wire_int.h"

/* ------------------------------------------------------------ records */

size_t wire_mount_record_size(size_t key_len)
{
    return 2 + key_len + WIRE_MOUNT_META_BYTES;
}

static void put_meta(uint8_t **p, const wire_mount_meta *m)
{
    put_u64(p, m->ident);
    put_u64(p, m->version);
    put_u64(p, m->mtime_ms);
    put_u32(p, m->len);
    put_u32(p, m->uid);
    put_u32(p, m->gid);
    put_u32(p, m->mode);
}

static void get_meta(const uint8_t **p, wire_mount_meta *m)
{
    m->ident = get_u64(p);
    m->version = get_u64(p);
    m->mtime_ms = get_u64(p);
    m->len = get_u32(p);
    m->uid = get_u32(p);
    m->gid = get_u32(p);
    m->mode = get_u32(p);
}

void wire_mount_put_record(uint8_t **p, const char *key, uint16_t key_len,
                           const wire_mount_meta *meta)
{
    put_u16(p, key_len);
    put_bytes(p, (const uint8_t *)key, key_len);
    put_meta(p, meta);
}

void wire_mount_get_record(const uint8_t **p, size_t *left, const char **key,
                           uint16_t *key_len, wire_mount_meta *meta)
{
    *key_len = get_u16(p);
    *key = (const char *)*p;
    *p += *key_len;
    get_meta(p, meta);
    *left -= wire_mount_record_size(*key_len);
}

/* Whether `len` bytes hold exactly `n` well-formed records. */
static int check_records(const uint8_t *b, size_t len, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (len < 2)
            return -EBADMSG;
        size_t k = le_get16(b);
        if (k == 0 || k > LIMIT_KEY)
            return -EBADMSG;
        size_t rec = wire_mount_record_size(k);
        if (len < rec)
            return -EBADMSG;
        b += rec;
        len -= rec;
    }
    return len == 0 ? 0 : -EBADMSG;
}

/* ---------------------------------------------------------------- REQ */

/* 0, -EBADMSG (a rule broken) or -EMSGSIZE (a limit). */
static int req_check(const wire_mount_req *r)
{
    if (r->len && !r->bytes)
        return -EBADMSG;
    bool no_flags = r->flags == 0 && r->max == 0;
    switch (r->op) {
    case WIRE_MOUNT_HELLO:
        return no_flags && r->len == 0 && r->client_id ? 0 : -EBADMSG;
    case WIRE_MOUNT_SUBMIT:
        if (r->len > LIMIT_OP)
            return -EMSGSIZE;
        return (r->flags & ~WIRE_MOUNT_SUBMIT_ANSWERED) == 0 && r->max == 0 &&
               r->len > 0 && r->rid > 0 && r->client_id ? 0 : -EBADMSG;
    case WIRE_MOUNT_READ:
        if (r->len > LIMIT_KEY)
            return -EMSGSIZE;
        return (r->flags & ~WIRE_MOUNT_READ_FLAGS) == 0 && r->max == 0 &&
               r->len > 0 && r->client_id == 0 ? 0 : -EBADMSG;
    case WIRE_MOUNT_LIST:
        if (r->len > LIMIT_KEY || r->max > WIRE_MOUNT_PAGE_MAX)
            return -EMSGSIZE;
        return (r->flags & ~WIRE_MOUNT_READ_FLAGS) == 0 && r->max > 0 &&
               r->client_id == 0 ? 0 : -EBADMSG;
    case WIRE_MOUNT_BARRIER:
    case WIRE_MOUNT_USAGE:
    case WIRE_MOUNT_STATUS:
    case WIRE_MOUNT_BLOCK:
    case WIRE_MOUNT_SNAPSHOT:
    case WIRE_MOUNT_MEMBERS:
        return no_flags && r->len == 0 && r->client_id == 0 ? 0 : -EBADMSG;
    default:
        return -EPROTO;
    }
}

size_t wire_mount_req_size(const wire_mount_req *r)
{
    if (!r || req_check(r) < 0)
        return 0;
    return WIRE_HEADER_BYTES + WIRE_MOUNT_REQ_FIXED + (size_t)r->len;
}

int wire_encode_mount_req_into(const wire_mount_req *r, uint8_t *buf,
                               size_t cap, size_t *out_len)
{
    if (!r)
        return -EINVAL;
    int rc = req_check(r);
    if (rc < 0)
        return rc == -EMSGSIZE ? rc : -EINVAL;
    size_t frame = wire_mount_req_size(r);
    uint8_t *p;
    rc = wire_start(buf, cap, frame, WIRE_MOUNT_REQ, &p);
    if (rc)
        return rc;
    put_u8(&p, r->op);
    put_u64(&p, r->rid);
    put_u64(&p, r->client_id);
    put_u64(&p, r->arg);
    put_u32(&p, r->flags);
    put_u32(&p, r->max);
    put_u32(&p, r->len);
    put_bytes(&p, r->bytes, r->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

int wire_decode_mount_req(const uint8_t *buf, size_t len, wire_mount_req *r)
{
    if (!r)
        return -EINVAL;
    const uint8_t *p;
    size_t left;
    int rc = wire_open_body(buf, len, WIRE_MOUNT_REQ, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_MOUNT_REQ_FIXED)
        return -EBADMSG;
    wire_mount_req d;
    d.op = get_u8(&p);
    d.rid = get_u64(&p);
    d.client_id = get_u64(&p);
    d.arg = get_u64(&p);
    d.flags = get_u32(&p);
    d.max = get_u32(&p);
    d.len = get_u32(&p);
    left -= WIRE_MOUNT_REQ_FIXED;
    if (d.op < WIRE_MOUNT_HELLO || d.op > WIRE_MOUNT_REQ_LAST)
        return -EPROTO;
    if (d.len > LIMIT_OP)
        return -EMSGSIZE;
    if (d.len != left)
        return -EBADMSG;
    d.bytes = d.len ? p : NULL;
    rc = req_check(&d);
    if (rc < 0)
        return rc;
    *r = d;
    return 0;
}

/* ---------------------------------------------------------------- MSG */

static bool meta_zero(const wire_mount_meta *m)
{
    return !m->ident && !m->version && !m->mtime_ms && !m->len && !m->uid &&
           !m->gid && !m->mode;
}

static int msg_check(const wire_mount_msg *m)
{
    if (m->len && !m->bytes)
        return -EBADMSG;
    if (m->result > 0 || m->result <= -4096)
        return -EBADMSG;
    bool plain = m->n == 0 && !m->a && !m->b && !m->c && !m->server &&
                 !m->leader;
    switch (m->op) {
    case WIRE_MOUNT_BEAT:
        return m->n == 0 && m->len == 0 && m->rid == 0 &&
               (m->flags & ~(WIRE_MOUNT_BEAT_GAP | WIRE_MOUNT_BEAT_NO_WRITES))
               == 0 && meta_zero(&m->meta) ? 0 : -EBADMSG;
    case WIRE_MOUNT_CHANGED:
        if (m->len > LIMIT_KEY)
            return -EMSGSIZE;
        return plain && m->len > 0 && m->flags == 0 && m->result == 0
               ? 0 : -EBADMSG;
    case WIRE_MOUNT_DONE:
        return plain && m->len == 0 && m->flags == 0 && meta_zero(&m->meta)
               ? 0 : -EBADMSG;
    case WIRE_MOUNT_ENTRY:
        if (m->len > LIMIT_VALUE)
            return -EMSGSIZE;
        return plain && m->flags == 0 && (m->result == 0 ||
               (m->len == 0 && meta_zero(&m->meta))) ? 0 : -EBADMSG;
    case WIRE_MOUNT_PAGE:
        if (m->n > WIRE_MOUNT_PAGE_MAX ||
            m->len > WIRE_MOUNT_PAGE_MAX * wire_mount_record_size(LIMIT_KEY))
            return -EMSGSIZE;
        if (m->a || m->b || m->c || m->server || m->leader ||
            (m->flags & ~WIRE_MOUNT_PAGE_MORE) || !meta_zero(&m->meta) ||
            (m->result < 0 && (m->n || m->len || m->flags)))
            return -EBADMSG;
        return check_records(m->bytes, m->len, m->n);
    case WIRE_MOUNT_COUNTS:
        return m->n == 0 && m->len == 0 && m->c == 0 && !m->server &&
               !m->leader && m->flags == 0 && meta_zero(&m->meta) &&
               (m->result == 0 || (!m->a && !m->b)) ? 0 : -EBADMSG;
    case WIRE_MOUNT_TEXT:
        if (m->len > WIRE_MOUNT_MAX_TEXT)
            return -EMSGSIZE;
        return plain && m->flags == 0 && meta_zero(&m->meta) &&
               (m->result == 0 || m->len == 0) ? 0 : -EBADMSG;
    default:
        return -EPROTO;
    }
}

size_t wire_mount_msg_size(const wire_mount_msg *m)
{
    if (!m || msg_check(m) < 0)
        return 0;
    return WIRE_HEADER_BYTES + WIRE_MOUNT_MSG_FIXED + (size_t)m->len;
}

int wire_encode_mount_msg_into(const wire_mount_msg *m, uint8_t *buf,
                               size_t cap, size_t *out_len)
{
    if (!m)
        return -EINVAL;
    int rc = msg_check(m);
    if (rc < 0)
        return rc == -EMSGSIZE ? rc : -EINVAL;
    size_t frame = wire_mount_msg_size(m);
    uint8_t *p;
    rc = wire_start(buf, cap, frame, WIRE_MOUNT_MSG, &p);
    if (rc)
        return rc;
    put_u8(&p, m->op);
    put_u64(&p, m->rid);
    put_u32(&p, (uint32_t)m->result);
    put_u64(&p, m->a);
    put_u64(&p, m->b);
    put_u64(&p, m->c);
    put_u32(&p, m->server);
    put_u32(&p, m->leader);
    put_u32(&p, m->flags);
    put_meta(&p, &m->meta);
    put_u32(&p, m->n);
    put_u32(&p, m->len);
    put_bytes(&p, m->bytes, m->len);
    if (out_len)
        *out_len = frame;
    return 0;
}

int wire_decode_mount_msg(const uint8_t *buf, size_t len, wire_mount_msg *m)
{
    if (!m)
        return -EINVAL;
    const uint8_t *p;
    size_t left;
    int rc = wire_open_body(buf, len, WIRE_MOUNT_MSG, &p, &left);
    if (rc)
        return rc;
    if (left < WIRE_MOUNT_MSG_FIXED)
        return -EBADMSG;
    wire_mount_msg d;
    d.op = get_u8(&p);
    d.rid = get_u64(&p);
    d.result = (int32_t)get_u32(&p);
    d.a = get_u64(&p);
    d.b = get_u64(&p);
    d.c = get_u64(&p);
    d.server = get_u32(&p);
    d.leader = get_u32(&p);
    d.flags = get_u32(&p);
    get_meta(&p, &d.meta);
    d.n = get_u32(&p);
    d.len = get_u32(&p);
    left -= WIRE_MOUNT_MSG_FIXED;
    if (d.op < WIRE_MOUNT_BEAT || d.op > WIRE_MOUNT_MSG_LAST)
        return -EPROTO;
    if (d.len > WIRE_MOUNT_MAX_TEXT)
        return -EMSGSIZE;
    if (d.len != left)
        return -EBADMSG;
    d.bytes = d.len ? p : NULL;
    rc = msg_check(&d);
    if (rc < 0)
        return rc;
    *m = d;
    return 0;
}

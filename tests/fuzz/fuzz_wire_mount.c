/*
 * fuzz_wire_mount.c - libFuzzer target for the frames of client-only
 * mounts (net/wire_mount.c).  Each input is decoded as it is, and as the
 * body of a correct MOUNT_REQ and MOUNT_MSG header.
 *
 * Properties (a violation traps):
 *   P1. no decoder reads outside its input (ASan: exact-size heap copies);
 *   P2. a decoder fails only with -EPROTO, -EMSGSIZE or -EBADMSG;
 *   P3. whatever decodes re-encodes to the same bytes, and a PAGE's
 *       records walk to exactly its length.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/le.h"
#include "../../net/wire_mount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            __builtin_trap();                                                 \
    } while (0)

static void check_error(int rc)
{
    CHECK(rc == 0 || rc == -EPROTO || rc == -EMSGSIZE || rc == -EBADMSG);
}

static void one(const uint8_t *buf, size_t len)
{
    wire_mount_req q;
    int rc = wire_decode_mount_req(buf, len, &q);
    check_error(rc);
    if (rc == 0) {
        size_t n = 0;
        uint8_t *again = malloc(len);
        CHECK(again);
        CHECK(wire_encode_mount_req_into(&q, again, len, &n) == 0);
        CHECK(n == len && memcmp(again, buf, len) == 0);
        free(again);
    }
    wire_mount_msg m;
    rc = wire_decode_mount_msg(buf, len, &m);
    check_error(rc);
    if (rc == 0) {
        size_t n = 0;
        uint8_t *again = malloc(len);
        CHECK(again);
        CHECK(wire_encode_mount_msg_into(&m, again, len, &n) == 0);
        CHECK(n == len && memcmp(again, buf, len) == 0);
        free(again);
        if (m.op == WIRE_MOUNT_PAGE) {
            const uint8_t *p = m.bytes;
            size_t left = m.len;
            for (uint32_t i = 0; i < m.n; i++) {
                const char *key;
                uint16_t kl;
                wire_mount_meta meta;
                CHECK(left >= wire_mount_record_size(0));
                wire_mount_get_record(&p, &left, &key, &kl, &meta);
                CHECK(kl > 0);
            }
            CHECK(left == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *raw = malloc(size ? size : 1);
    if (!raw)
        return 0;
    if (size)
        memcpy(raw, data, size);
    one(raw, size);
    free(raw);
    static const uint8_t kinds[] = { WIRE_MOUNT_REQ, WIRE_MOUNT_MSG };
    for (size_t k = 0; k < sizeof kinds; k++) {
        size_t len = WIRE_HEADER_BYTES + size;
        uint8_t *f = malloc(len);
        if (!f)
            return 0;
        le_put32(f, WIRE_MAGIC);
        f[4] = WIRE_VERSION;
        f[5] = kinds[k];
        le_put16(f + 6, 0);
        le_put32(f + 8, (uint32_t)size);
        if (size)
            memcpy(f + WIRE_HEADER_BYTES, data, size);
        one(f, len);
        free(f);
    }
    return 0;
}

/*
 * fuzz_members.c - libFuzzer target for the membership decoder
 * (px_members_decode in base/entry.c): the value of a CONFIG
 * block, as the replica and the `.chain/<n>` renderer read it.
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. decoding fails only with -EINVAL and then leaves the output alone;
 *   P3. whatever decodes is a valid configuration (px_members_valid) with
 *       a quorum of 1..n_voters, and re-encodes to the same bytes;
 *   P4. the block renders as printable text.
 */
#include "fuzz_util.h"

#include "../../chain/chain.h"
#include "../../consensus/px_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    uint32_t len = (uint32_t)size;
    uint8_t *buf = fuzz_copy(data, size);
    CHECK(buf != NULL);

    px_members m, untouched;
    memset(&m, 0xa5, sizeof m);
    untouched = m;
    int rc = px_members_decode(buf, len, &m);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc) {
        CHECK(memcmp(&m, &untouched, sizeof m) == 0);
    } else {
        CHECK(px_members_valid(&m));
        uint32_t q = px_members_quorum(&m);
        CHECK(q >= 1 && q <= m.n_voters);
        for (uint32_t i = 0; i < m.n_voters; i++)
            CHECK(px_members_is_voter(&m, m.voters[i]));
        for (uint32_t i = 0; i < m.n_learners; i++)
            CHECK(px_members_is_member(&m, m.learners[i]) &&
                  !px_members_is_voter(&m, m.learners[i]));
        uint8_t *re = malloc(len);
        CHECK(re != NULL);
        CHECK(px_members_encode(&m, re, len) == (int)len);
        CHECK(memcmp(re, buf, len) == 0);
        if (len)
            CHECK(px_members_encode(&m, re, len - 1) == -ENOSPC);
        free(re);
    }

    /* a CONFIG value: the members, then an optional context */
    px_members c;
    const uint8_t *ctx = NULL;
    uint32_t ctx_len = 0;
    rc = px_config_decode(buf, len, &c, &ctx, &ctx_len);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        CHECK(px_members_valid(&c));
        CHECK(ctx_len <= PX_CONFIG_MAX_CONTEXT && (ctx_len == 0) == (ctx == NULL));
        CHECK(ctx == NULL || (ctx >= buf && ctx + ctx_len == buf + len));
        uint8_t *re = malloc(len);
        CHECK(re != NULL);
        CHECK(px_config_encode(&c, ctx, ctx_len, re, len) == (int)len);
        CHECK(memcmp(re, buf, len) == 0);
        free(re);
    }

    chain_block b;
    memset(&b, 0, sizeof b);
    b.index = 3;
    b.kind = PX_ENTRY_CONFIG;
    b.len = len;
    b.data = buf;
    char *text = NULL;
    uint32_t text_len = 0;
    CHECK(chain_block_render(&b, &text, &text_len) == 0);
    CHECK(strlen(text) == text_len);
    for (uint32_t i = 0; i < text_len; i++)
        CHECK(text[i] == '\n' || (text[i] >= 0x20 && text[i] < 0x7f));
    free(text);
    free(buf);
    return 0;
}

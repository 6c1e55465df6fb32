/*
 * fuzz_segment.c - libFuzzer target for the hash chain on disk
 * (chain/segment.c): the input becomes the segment files of a chain
 * directory, which is then verified and opened exactly as a node and
 * `paxosctl verify` do it (real files, on tmpfs when there is one).
 *
 * Input layout:
 *   0      1   h: segments n = 1 + (h & 3) % 3; bit 2: one more, empty
 *              segment file after them (a roll's leftover); bit 3: roll
 *              after every record on the append of step 4
 *   1      n(+1) first block index of each segment file (its name), 0..255
 *   then   2*(n-1) little-endian byte counts of segments 1..n-1
 *   rest   the segment files' bytes, in order; the last takes what is left
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. verify and open agree: both succeed with the same head, hash and
 *       torn tail, or both answer -EBADMSG with a damage report naming a
 *       file, an offset inside it and a reason;
 *   P3. every block of an opened chain reads back, links to the one before,
 *       hashes by the hash rule, and renders as printable text; applying
 *       them to a key-value state machine fails only with -EINVAL;
 *   P4. after the open (which cuts a torn tail) one more block appends,
 *       and the directory then verifies clean with one more block.
 */
#include "fuzz_util.h"

#include "../../chain/chain.h"
#include "../../chain/kv.h"

#define SEG_MAX 4

static void check_damage(const chain_damage *d)
{
    CHECK(d->reason[0] != '\0');
    CHECK(d->path[0] != '\0');
    long long size = fuzz_file_size(d->path);
    CHECK(size >= 0 && d->offset <= (uint64_t)size);
}

static void check_text(const char *t, uint32_t len)
{
    CHECK(strlen(t) == len);
    for (uint32_t i = 0; i < len; i++)
        CHECK(t[i] == '\n' || (t[i] >= 0x20 && t[i] < 0x7f));
}

/* P3 for an opened chain. */
static void check_blocks(chain *c)
{
    uint64_t head = chain_head_index(c);
    uint8_t prev[CHAIN_HASH_BYTES] = { 0 };
    kv *state = kv_create();
    bool applying = state != NULL;
    chain_block b;

    CHECK(chain_read(c, 0, &b) == -ENOENT);
    CHECK(chain_read(c, head + 1, &b) == -ENOENT);
    for (uint64_t i = 1; i <= head; i++) {
        CHECK(chain_read(c, i, &b) == 0);
        CHECK(b.index == i);
        CHECK(memcmp(b.prev_hash, prev, CHAIN_HASH_BYTES) == 0);
        uint8_t h[CHAIN_HASH_BYTES];
        chain_hash_block(b.prev_hash, b.index, b.time_ms, b.kind, b.data,
                         b.len, h);
        CHECK(memcmp(h, b.hash, CHAIN_HASH_BYTES) == 0);
        CHECK(chain_hash_at(c, i, h) == 0);
        CHECK(memcmp(h, b.hash, CHAIN_HASH_BYTES) == 0);
        memcpy(prev, b.hash, CHAIN_HASH_BYTES);

        char *text = NULL;
        uint32_t text_len = 0;
        CHECK(chain_block_render(&b, &text, &text_len) == 0);
        check_text(text, text_len);
        free(text);

        if (applying) {   /* as the node replays its chain at start-up */
            px_entry e = { .slot = b.index, .time_ms = b.time_ms,
                           .kind = b.kind, .len = b.len, .data = b.data };
            int rc = kv_apply_entry(state, &e, NULL, NULL);
            CHECK(rc == 0 || rc == -EINVAL);
            applying = rc == 0;
        }
        chain_block_free(&b);
    }
    CHECK(memcmp(prev, chain_head_hash(c), CHAIN_HASH_BYTES) == 0);
    kv_destroy(state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cursor in = { data, size };
    uint8_t h = (uint8_t)fuzz_take(&in, 1);
    uint32_t n = 1 + (h & 3u) % 3;
    bool empty_tail = h & 4u;
    bool roll = h & 8u;
    uint64_t names[SEG_MAX];
    size_t lens[SEG_MAX];

    for (uint32_t i = 0; i < n + empty_tail; i++)
        names[i] = fuzz_take(&in, 1);
    for (uint32_t i = 0; i + 1 < n; i++)
        lens[i] = (size_t)fuzz_take(&in, 2);

    const char *dir = fuzz_fresh_dir();
    char chain_dir[400], path[480];
    snprintf(chain_dir, sizeof chain_dir, "%s/chain", dir);
    CHECK(mkdir(chain_dir, 0755) == 0);
    for (uint32_t i = 0; i < n + empty_tail; i++) {
        size_t len = 0;
        const uint8_t *p = NULL;
        if (i + 1 < n)
            p = fuzz_take_bytes(&in, lens[i], &len);
        else if (i + 1 == n)
            p = fuzz_take_bytes(&in, in.left, &len);
        snprintf(path, sizeof path, "%s/seg-%020llu.blk", chain_dir,
                 (unsigned long long)names[i]);
        fuzz_write_file(path, p, len, 0644);
    }

    /* P2: the read-only verification first, then the node's open. */
    uint64_t v_head = 0;
    uint8_t v_hash[CHAIN_HASH_BYTES];
    chain_open_report v_torn;
    chain_damage v_damage;
    memset(&v_torn, 0, sizeof v_torn);
    int v_rc = chain_verify_dir_report(dir, &v_head, v_hash, &v_torn,
                                       &v_damage);
    CHECK(v_rc == 0 || v_rc == -EBADMSG);
    if (v_rc == -EBADMSG)
        check_damage(&v_damage);
    else
        CHECK(!v_torn.torn_tail_cut);

    chain *c = NULL;
    chain_open_report report;
    chain_damage damage;
    int rc = chain_open(dir, &c, &report, &damage);
    CHECK(rc == v_rc);
    if (rc) {
        CHECK(strcmp(damage.path, v_damage.path) == 0);
        CHECK(damage.offset == v_damage.offset);
        CHECK(damage.index == v_damage.index);
        return 0;
    }
    uint64_t head = chain_head_index(c);
    CHECK(head == v_head);
    CHECK(memcmp(chain_head_hash(c), v_hash, CHAIN_HASH_BYTES) == 0);
    CHECK(report.torn_bytes == v_torn.torn_bytes);
    CHECK(report.torn_tail_cut == (v_torn.torn_bytes > 0));
    if (report.torn_bytes) {
        CHECK(strcmp(report.torn_path, v_torn.torn_path) == 0);
        CHECK(report.torn_offset == v_torn.torn_offset);
        CHECK(fuzz_file_size(report.torn_path) ==
              (long long)report.torn_offset);
    }
    CHECK(chain_synced_index(c) == head);

    check_blocks(c);

    /* P4: the opened chain takes another block. */
    static const uint8_t value[] = "fuzz";
    uint8_t new_hash[CHAIN_HASH_BYTES];
    if (roll)
        chain_set_segment_bytes(c, 1);
    CHECK(chain_append(c, head + 1, 1000, PX_ENTRY_NOOP, value,
                       sizeof value, new_hash) == 0);
    CHECK(chain_sync(c) == 0);
    CHECK(chain_head_index(c) == head + 1);
    chain_close(c);

    memset(&v_torn, 0, sizeof v_torn);
    CHECK(chain_verify_dir_report(dir, &v_head, v_hash, &v_torn,
                                  &v_damage) == 0);
    CHECK(v_head == head + 1 && v_torn.torn_bytes == 0);
    CHECK(memcmp(v_hash, new_hash, CHAIN_HASH_BYTES) == 0);
    return 0;
}

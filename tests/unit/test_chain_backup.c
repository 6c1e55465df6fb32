/*
 * test_chain_backup.c - backup files (chain/snap.h, chain/backup.c): a
 * backing directory with snapshots and a compacted chain is backed up and
 * restored into a new directory that restarts to the same state; a backup
 * without snapshot works too; any flipped byte or cut in the backup is
 * refused before anything is created; a damaged directory is not backed
 * up; a non-empty target is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../chain/chain.h"
#include "../../chain/kv.h"
#include "../../chain/snap.h"
#include "kvbuild.h"
#include "tmpdir.h"

static uint64_t seq = 1;

static void entry(chain *c, kv *s, int ops)
{
    kvb_batch b;
    kvb_init(&b);
    for (int i = 0; i < ops; i++) {
        char key[16], val[200];
        uint64_t x = seq * 2654435761u;
        snprintf(key, sizeof key, "k%u", (unsigned)(x % 150));
        int n = snprintf(val, sizeof val, "value %llu %llu",
                         (unsigned long long)seq, (unsigned long long)x);
        uint8_t op[300];
        uint32_t len = (x >> 8) % 6 == 0
                           ? kvb_del(op, sizeof op, key)
                           : kvb_put(op, sizeof op, key, val, (uint32_t)n);
        kvb_add(&b, 4, seq++, op, len);
    }
    uint64_t slot = chain_head_index(c) + 1;
    assert_int_equal(chain_append(c, slot, slot * 10, PX_ENTRY_BATCH, b.buf,
                                  b.len, NULL), 0);
    px_entry e = { .slot = slot, .time_ms = slot * 10,
                   .kind = PX_ENTRY_BATCH, .len = b.len, .data = b.buf };
    assert_int_equal(kv_apply_entry(s, &e, NULL, NULL), 0);
    kvb_free(&b);
}

/* A backing directory: snapshots every 30 entries, compacted, and 12
 * entries after the last one.  Returns the live state. */
static kv *make_dir(const char *dir, bool snapshots)
{
    chain *c;
    chain_open_report rep;
    chain_damage dmg;
    assert_int_equal(chain_open(dir, &c, &rep, &dmg), 0);
    chain_set_segment_bytes(c, 3000);
    kv *s = kv_create();
    snapstore *st = NULL;
    if (snapshots)
        assert_int_equal(snapstore_open(dir, true, &st), 0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 30; i++)
            entry(c, s, 5);
        assert_int_equal(chain_sync(c), 0);
        if (st) {
            assert_int_equal(snapstore_take(st, s, chain_head_hash(c), NULL, 0,
                                            NULL), 0);
            assert_true(chain_compact(c, snapstore_compact_index(st)) >= 0);
        }
    }
    for (int i = 0; i < 12; i++)
        entry(c, s, 5);
    assert_int_equal(chain_sync(c), 0);
    if (snapshots)
        assert_true(chain_base_index(c) > 0);
    chain_close(c);
    snapstore_close(st);
    return s;
}

static void same_digest(kv *a, kv *b)
{
    uint8_t x[KV_DIGEST_BYTES], y[KV_DIGEST_BYTES];
    kv_digest(a, x);
    kv_digest(b, y);
    assert_memory_equal(x, y, KV_DIGEST_BYTES);
    assert_int_equal(kv_applied_index(a), kv_applied_index(b));
    assert_int_equal(kv_count(a), kv_count(b));
}

static void round_trip(bool snapshots)
{
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    kv *live = make_dir(dir, snapshots);
    char file[700], target[700];
    snprintf(file, sizeof file, "%s/backup.pxb", dir2);
    snprintf(target, sizeof target, "%s/restored", dir2);
    backup_report b;
    chain_damage dmg;
    assert_int_equal(backup_write_dir(dir, file, &b, &dmg), 0);
    assert_int_equal(b.has_snap, snapshots);
    assert_int_equal(b.head, kv_applied_index(live));
    char part[760];
    snprintf(part, sizeof part, "%s.part", file);
    assert_int_equal(access(part, F_OK), -1);

    backup_report r;
    assert_int_equal(backup_restore(file, target, &r, &dmg), 0);
    assert_int_equal(r.head, b.head);
    assert_memory_equal(r.head_hash, b.head_hash, CHAIN_HASH_BYTES);
    struct stat sb;
    assert_int_equal(stat(target, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    /* the restored directory restarts to the same state */
    acceptor_verify av;
    assert_int_equal(acceptor_verify_dir(target, &av), 0);
    assert_false(av.missing);
    assert_true(av.info.recovering);
    assert_int_equal(av.info.mark.index, b.head);
    chain_restored rs;
    chain_restore_report rrep;
    assert_int_equal(chain_restore(target, &av.info.mark, &rs, &rrep, &dmg),
                     0);
    assert_int_equal(rs.has_snap, snapshots);
    assert_int_equal(rs.index, b.head);
    same_digest(live, rs.state);
    /* and goes on */
    entry(rs.chain, rs.state, 3);
    assert_int_equal(chain_sync(rs.chain), 0);
    chain_restored_close(&rs);
    assert_int_equal(chain_verify_all(target, NULL, NULL, &rrep, &dmg), 0);

    /* a non-empty target is refused, and left alone */
    assert_int_equal(backup_restore(file, target, &r, &dmg), -ENOTEMPTY);
    assert_int_equal(chain_verify_all(target, NULL, NULL, &rrep, &dmg), 0);
    kv_destroy(live);
    rm_tree(dir);
    rm_tree(dir2);
}

static void test_round_trip_with_snapshot(void **state)
{
    (void)state;
    round_trip(true);
}

static void test_round_trip_chain_only(void **state)
{
    (void)state;
    round_trip(false);
}

/* --new-cluster: the same directory, its acceptor store not recovering */
static void test_restore_for_a_new_cluster(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    kv *live = make_dir(dir, true);
    char file[700], target[700];
    snprintf(file, sizeof file, "%s/backup.pxb", dir2);
    snprintf(target, sizeof target, "%s/member", dir2);
    backup_report b, r;
    chain_damage dmg;
    assert_int_equal(backup_write_dir(dir, file, &b, &dmg), 0);
    assert_int_equal(backup_restore_ex(file, target, true, &r, &dmg), 0);
    assert_int_equal(r.head, b.head);
    acceptor_verify av;
    assert_int_equal(acceptor_verify_dir(target, &av), 0);
    assert_false(av.info.recovering);
    assert_int_equal(av.info.mark.index, b.head);
    assert_memory_equal(av.info.mark.hash, b.head_hash, CHAIN_HASH_BYTES);
    chain_restored rs;
    chain_restore_report rrep;
    assert_int_equal(chain_restore(target, &av.info.mark, &rs, &rrep, &dmg),
                     0);
    same_digest(live, rs.state);
    chain_restored_close(&rs);
    kv_destroy(live);
    rm_tree(dir);
    rm_tree(dir2);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    fclose(f);
}

static void test_damaged_backup_is_refused(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    kv *live = make_dir(dir, true);
    char file[700], target[700];
    snprintf(file, sizeof file, "%s/backup.pxb", dir2);
    snprintf(target, sizeof target, "%s/restored", dir2);
    chain_damage dmg;
    assert_int_equal(backup_write_dir(dir, file, NULL, &dmg), 0);
    size_t len;
    uint8_t *orig = read_all(file, &len);
    uint8_t *buf = malloc(len);
    size_t step = len / 250 ? len / 250 : 1;
    int tested = 0;
    for (size_t pos = 0; pos < len; pos += (pos < 200 || pos + 200 > len)
                                               ? 1 : step) {
        memcpy(buf, orig, len);
        buf[pos] ^= 0x08;
        write_all(file, buf, len);
        int rc = backup_restore(file, target, NULL, &dmg);
        if (rc != -EBADMSG)
            fail_msg("flip at %zu: rc %d", pos, rc);
        if (dmg.offset > pos)
            fail_msg("flip at %zu reported at %llu: %s", pos,
                     (unsigned long long)dmg.offset, dmg.reason);
        assert_string_equal(dmg.path, file);
        assert_int_equal(access(target, F_OK), -1);   /* nothing made */
        tested++;
    }
    assert_true(tested > 300);
    for (size_t cut = 0; cut < len; cut += (cut + 300 > len) ? 1 : step) {
        write_all(file, orig, cut);
        int rc = backup_restore(file, target, NULL, &dmg);
        if (rc != -EBADMSG)
            fail_msg("cut at %zu: rc %d", cut, rc);
        assert_int_equal(access(target, F_OK), -1);
    }
    write_all(file, orig, len);
    assert_int_equal(backup_restore(file, target, NULL, &dmg), 0);
    free(buf);
    free(orig);
    kv_destroy(live);
    rm_tree(dir);
    rm_tree(dir2);
}

static void test_damaged_dir_is_not_backed_up(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    kv *live = make_dir(dir, true);
    snapstore *st;
    assert_int_equal(snapstore_open(dir, false, &st), 0);
    char p[700];
    assert_int_equal(snapstore_path(st, snapstore_index_at(st, 0), p,
                                    sizeof p), 0);
    snapstore_close(st);
    size_t len;
    uint8_t *bytes = read_all(p, &len);
    bytes[len / 3] ^= 1;
    write_all(p, bytes, len);
    free(bytes);
    char file[700];
    snprintf(file, sizeof file, "%s/backup.pxb", dir2);
    chain_damage dmg;
    assert_int_equal(backup_write_dir(dir, file, NULL, &dmg), -EBADMSG);
    assert_string_equal(dmg.path, p);
    assert_int_equal(access(file, F_OK), -1);
    kv_destroy(live);
    rm_tree(dir);
    rm_tree(dir2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_with_snapshot),
        cmocka_unit_test(test_round_trip_chain_only),
        cmocka_unit_test(test_restore_for_a_new_cluster),
        cmocka_unit_test(test_damaged_backup_is_refused),
        cmocka_unit_test(test_damaged_dir_is_not_backed_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_fs_inode.c - the mount's inode table (fs/inode.c): stable numbers,
 * lookup by key, number and file identity, re-keying after a rename,
 * orphans, and growth with many records.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../fs/inode.h"

static fs_inode *add(fs_inode_table *t, const char *key, uint64_t ident)
{
    fs_inode *in = fs_inode_get_or_add(t, key, strlen(key));
    assert_non_null(in);
    fs_inode_set_ident(t, in, ident);
    return in;
}

static void test_keys_numbers_identities(void **state)
{
    (void)state;
    fs_inode_table *t = fs_inode_table_create();
    assert_non_null(t);
    fs_inode *a = add(t, "a", 100);
    fs_inode *b = add(t, "b", 200);
    assert_true(a->ino >= FS_INO_FIRST_KEY && b->ino > a->ino);
    assert_ptr_equal(fs_inode_get_or_add(t, "a", 1), a);
    assert_ptr_equal(fs_inode_by_key(t, "b", 1), b);
    assert_ptr_equal(fs_inode_by_ino(t, a->ino), a);
    assert_ptr_equal(fs_inode_by_ident(t, 200), b);
    assert_null(fs_inode_by_ident(t, 300));
    assert_null(fs_inode_by_ident(t, 0));

    /* an identity belongs to one record: giving it to another takes it */
    fs_inode *c = add(t, "c", 0);
    fs_inode_set_ident(t, c, 100);
    assert_ptr_equal(fs_inode_by_ident(t, 100), c);
    assert_int_equal(a->ident, 0);

    /* a rename: the record follows its file, the old name is free */
    fs_inode_orphan(t, b);
    assert_null(fs_inode_by_key(t, "b", 1));
    assert_ptr_equal(fs_inode_by_ident(t, 200), b);
    assert_int_equal(fs_inode_rekey(t, b, "moved", 5), 0);
    assert_false(b->orphan);
    assert_ptr_equal(fs_inode_by_key(t, "moved", 5), b);
    assert_string_equal(b->key, "moved");

    /* an unused orphan goes; a referenced one stays until released */
    fs_inode_orphan(t, c);
    c->nlookup = 1;
    fs_inode_release_if_unused(t, c);
    assert_ptr_equal(fs_inode_by_ident(t, 100), c);
    c->nlookup = 0;
    uint64_t cino = c->ino;
    fs_inode_release_if_unused(t, c);
    assert_null(fs_inode_by_ident(t, 100));
    assert_null(fs_inode_by_ino(t, cino));
    /* a new record of a freed name gets a new number */
    fs_inode *c2 = add(t, "c", 300);
    assert_true(c2->ino > cino);
    fs_inode_table_destroy(t);
}

static void count_visit(fs_inode *in, void *arg)
{
    (void)in;
    (*(int *)arg)++;
}

static void test_many_records(void **state)
{
    (void)state;
    fs_inode_table *t = fs_inode_table_create();
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        add(t, key, 1000 + (uint64_t)i);
    }
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof key, "k%d", i);
        fs_inode *in = fs_inode_by_key(t, key, strlen(key));
        assert_non_null(in);
        assert_ptr_equal(fs_inode_by_ident(t, 1000 + (uint64_t)i), in);
        assert_ptr_equal(fs_inode_by_ino(t, in->ino), in);
    }
    int n = 0;
    fs_inode_each(t, count_visit, &n);
    assert_int_equal(n, 5000);
    fs_inode_table_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_numbers_identities),
        cmocka_unit_test(test_many_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

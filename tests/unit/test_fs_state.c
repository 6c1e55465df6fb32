/*
 * test_fs_state.c - what the mount knows of the committed state without
 * holding it (fs/state.c, fs/wait.c), against a fake backend: inodes
 * follow their files by the stream of changed keys alone (renamed,
 * removed, replaced; a file created here notes what its key holds), and a
 * read of an inode's file delivers that file's value or nothing: read
 * again where the file moved while the read waited (no second read
 * point), nothing once it was removed, a read point alone for a file not
 * committed, -EAGAIN for a file that never stops moving.
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

#include "../../fs/fs_int.h"

/* ------------------------------------------------------- fake backend */

typedef struct fake {
    struct {
        char key[64];
        unsigned flags;
        fs_read_fn done;
        void *arg;
    } reads[32];
    uint32_t n_reads;
    struct {
        fs_done_fn done;
        void *arg;
    } points[8];
    uint32_t n_points;
    struct {
        char after[64];
        uint32_t max;
        unsigned flags;
        fs_list_fn done;
        void *arg;
    } lists[8];
    uint32_t n_lists;
} fake;

static int fake_read_key(void *ctx, const char *key, size_t key_len,
                         unsigned flags, fs_read_fn done, void *arg)
{
    fake *b = ctx;
    assert_true(b->n_reads < 32 && key_len < 64);
    memcpy(b->reads[b->n_reads].key, key, key_len);
    b->reads[b->n_reads].key[key_len] = '\0';
    b->reads[b->n_reads].flags = flags;
    b->reads[b->n_reads].done = done;
    b->reads[b->n_reads].arg = arg;
    b->n_reads++;
    return 0;
}

static int fake_barrier(void *ctx, fs_done_fn done, void *arg)
{
    fake *b = ctx;
    assert_true(b->n_points < 8);
    b->points[b->n_points].done = done;
    b->points[b->n_points].arg = arg;
    b->n_points++;
    return 0;
}

static int fake_list(void *ctx, const char *after, size_t after_len,
                     uint32_t max, unsigned flags, fs_list_fn done, void *arg)
{
    fake *b = ctx;
    assert_true(b->n_lists < 8 && after_len < 64);
    if (after_len)
        memcpy(b->lists[b->n_lists].after, after, after_len);
    b->lists[b->n_lists].after[after_len] = '\0';
    b->lists[b->n_lists].max = max;
    b->lists[b->n_lists].flags = flags;
    b->lists[b->n_lists].done = done;
    b->lists[b->n_lists].arg = arg;
    b->n_lists++;
    return 0;
}

typedef struct world {
    fake be;
    fs *f;
} world;

static int setup(void **st)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->f = calloc(1, sizeof *w->f);
    assert_non_null(w->f);
    w->f->be = (fs_backend){ .ctx = &w->be, .read_key = fake_read_key,
                             .read_barrier = fake_barrier,
                             .list = fake_list };
    w->f->inodes = fs_inode_table_create();
    assert_non_null(w->f->inodes);
    *st = w;
    return 0;
}

static int teardown(void **st)
{
    world *w = *st;
    fs_inode_table_destroy(w->f->inodes);
    free(w->f);
    free(w);
    return 0;
}

static fs_meta meta(uint64_t ident, uint64_t version, uint32_t len)
{
    return (fs_meta){ .ident = ident, .version = version,
                      .mtime_ms = 1000 + version, .len = len };
}

static void changed(world *w, const char *key, fs_meta m)
{
    fs_key_changed(w->f, key, strlen(key), &m);
}

static void removed(world *w, const char *key)
{
    changed(w, key, meta(0, 0, 0));
}

/* A key as a lookup found it. */
static fs_inode *looked_up(world *w, const char *key, fs_meta m)
{
    int err = 0;
    fs_inode *in = fs_resolve(w->f, key, &m, &err);
    assert_non_null(in);
    in->nlookup++;          /* the kernel holds it */
    return in;
}

/* ------------------------------------------------------------ reads */

typedef struct outcome {
    int calls;
    int result;
    bool had_view;
    fs_meta meta;
    const kv_value *value;
} outcome;

static outcome result_of;

static void then_record(fs_wait *wt, int result)
{
    result_of.calls++;
    result_of.result = result;
    result_of.had_view = wt->view != NULL;
    if (wt->view) {
        result_of.meta = wt->view->meta;
        result_of.value = wt->view->value;
    }
    fs_wait_free(wt);
}

static void read_file(world *w, fs_inode *in, unsigned flags)
{
    memset(&result_of, 0, sizeof result_of);
    fs_wait *wt = fs_wait_new(w->f, NULL, then_record);
    assert_non_null(wt);
    fs_wait_hold(wt, in, NULL);
    fs_wait_read_file(wt, flags);
}

/* Complete read number i with `m` (and a value when m.ident != 0). */
static void complete(world *w, uint32_t i, fs_meta m)
{
    kv_value *v = calloc(1, sizeof *v + 4);
    assert_non_null(v);
    v->refs = 1;
    v->len = m.len;
    v->ident = m.ident;
    v->version = m.version;
    fs_entry_view view = { .meta = m,
                           .value = m.ident && (w->be.reads[i].flags &
                                                FS_READ_VALUE) ? v : NULL };
    w->be.reads[i].done(w->be.reads[i].arg, 0, &view);
    free(v);
}

/* --------------------------------------------------------------- tests */

static void test_inodes_follow_their_files_by_the_stream(void **st)
{
    world *w = *st;
    fs_inode *in = looked_up(w, "a", meta(100, 1, 3));
    uint64_t ino = in->ino;
    assert_non_null(fs_committed(in));
    assert_int_equal(fs_committed(in)->len, 3);
    changed(w, "a", meta(100, 2, 7));                 /* written */
    assert_int_equal(fs_committed(in)->len, 7);
    assert_int_equal(fs_committed(in)->version, 2);
    removed(w, "a");                                  /* renamed a -> b */
    changed(w, "b", meta(100, 3, 7));
    assert_false(in->orphan);
    assert_string_equal(in->key, "b");
    assert_int_equal(fs_committed(in)->version, 3);
    assert_ptr_equal(fs_inode_by_key(w->f->inodes, "b", 1), in);
    assert_null(fs_inode_by_key(w->f->inodes, "a", 1));
    changed(w, "b", meta(200, 4, 1));                 /* renamed over */
    assert_true(in->orphan);
    assert_null(fs_committed(in));
    assert_int_equal(in->ino, ino);
    fs_inode *other = looked_up(w, "b", meta(200, 4, 1));
    assert_ptr_not_equal(other, in);
    assert_int_equal(other->ident, 200);
    removed(w, "b");
    assert_true(other->orphan);
    int err = 0;
    fs_meta none = meta(0, 0, 0);
    assert_null(fs_resolve(w->f, "b", &none, &err));
    assert_int_equal(err, ENOENT);
}

/* A file created here and not committed keeps its name whatever its key
 * holds, and notes what that is: the identity its first commit gets. */
static void test_a_pending_file_notes_what_its_key_holds(void **st)
{
    world *w = *st;
    fs_inode *in = fs_inode_get_or_add(w->f->inodes, "new", 3);
    assert_non_null(in);
    fs_ofile dummy = { 0 };
    in->of = &dummy;
    assert_true(fs_is_pending(in));
    changed(w, "new", meta(300, 5, 2));
    assert_false(in->orphan);
    assert_int_equal(in->ident, 0);
    assert_null(fs_committed(in));
    assert_int_equal(in->seen.ident, 300);
    removed(w, "new");
    assert_false(in->orphan);
    assert_int_equal(in->seen.ident, 0);
    in->of = NULL;
    fs_inode_orphan(w->f->inodes, in);
    fs_release_inode(w->f, in);
}

/* The file moved while its read waited: read again where it is, from the
 * applied state (no second read point); the value delivered is its own. */
static void test_a_read_follows_its_file(void **st)
{
    world *w = *st;
    fs_inode *in = looked_up(w, "a", meta(100, 1, 3));
    read_file(w, in, FS_READ_VALUE);
    assert_int_equal(w->be.n_reads, 1);
    assert_string_equal(w->be.reads[0].key, "a");
    assert_int_equal(w->be.reads[0].flags, FS_READ_VALUE);
    removed(w, "a");
    changed(w, "b", meta(100, 2, 3));
    complete(w, 0, meta(0, 0, 0));                    /* "a": gone */
    assert_int_equal(result_of.calls, 0);
    assert_int_equal(w->be.n_reads, 2);
    assert_string_equal(w->be.reads[1].key, "b");
    assert_int_equal(w->be.reads[1].flags, FS_READ_VALUE | FS_READ_APPLIED);
    assert_int_equal(w->be.n_points, 0);
    complete(w, 1, meta(100, 2, 3));
    assert_int_equal(result_of.calls, 1);
    assert_int_equal(result_of.result, 0);
    assert_true(result_of.had_view);
    assert_int_equal(result_of.meta.ident, 100);
    assert_non_null(result_of.value);
}

/* Removed while its read waited: no view (the file has no value here);
 * a key that now holds another file is not this file's value either. */
static void test_a_removed_file_reads_nothing(void **st)
{
    world *w = *st;
    fs_inode *in = looked_up(w, "a", meta(100, 1, 3));
    read_file(w, in, FS_READ_VALUE);
    changed(w, "a", meta(101, 2, 9));                 /* replaced */
    complete(w, 0, meta(101, 2, 9));
    assert_int_equal(result_of.calls, 1);
    assert_int_equal(result_of.result, 0);
    assert_false(result_of.had_view);
    assert_int_equal(w->be.n_reads, 1);
}

/* Nothing committed: a read point alone, or nothing at all from the
 * applied state; committed meanwhile (its first commit was applied while
 * the read point was taken): read it. */
static void test_an_uncommitted_file_takes_a_read_point(void **st)
{
    world *w = *st;
    fs_inode *in = fs_inode_get_or_add(w->f->inodes, "p", 1);
    fs_ofile dummy = { 0 };
    in->of = &dummy;
    read_file(w, in, FS_READ_APPLIED);
    assert_int_equal(result_of.calls, 1);              /* at once */
    assert_false(result_of.had_view);
    assert_int_equal(w->be.n_points + w->be.n_reads, 0);

    read_file(w, in, FS_READ_VALUE);
    assert_int_equal(w->be.n_points, 1);
    w->be.points[0].done(w->be.points[0].arg, 0);
    assert_int_equal(result_of.calls, 1);
    assert_false(result_of.had_view);

    read_file(w, in, FS_READ_VALUE);
    assert_int_equal(w->be.n_points, 2);
    changed(w, "p", meta(400, 7, 1));                  /* its first commit */
    fs_inode_set_ident(w->f->inodes, in, in->seen.ident);
    w->be.points[1].done(w->be.points[1].arg, 0);
    assert_int_equal(result_of.calls, 0);
    assert_int_equal(w->be.n_reads, 1);
    assert_string_equal(w->be.reads[0].key, "p");
    assert_int_equal(w->be.reads[0].flags, FS_READ_VALUE | FS_READ_APPLIED);
    complete(w, 0, meta(400, 7, 1));
    assert_int_equal(result_of.calls, 1);
    assert_true(result_of.had_view);
    in->of = NULL;
    in->nlookup = 0;
    fs_inode_orphan(w->f->inodes, in);
    fs_release_inode(w->f, in);
}

/* A file renamed again before every read completes is read at most
 * FS_COMMIT_TRIES more times, then the read fails with EAGAIN. */
static void test_rereads_are_bounded(void **st)
{
    world *w = *st;
    fs_inode *in = looked_up(w, "k0", meta(100, 1, 3));
    read_file(w, in, 0);
    for (uint32_t i = 0; i <= FS_COMMIT_TRIES; i++) {
        char from[16], to[16];
        snprintf(from, sizeof from, "k%u", i);
        snprintf(to, sizeof to, "k%u", i + 1);
        removed(w, from);
        changed(w, to, meta(100, 2 + i, 3));
        assert_int_equal(result_of.calls, 0);
        assert_int_equal(w->be.n_reads, i + 1);
        complete(w, i, meta(0, 0, 0));
    }
    assert_int_equal(result_of.calls, 1);
    assert_int_equal(result_of.result, -EAGAIN);
    assert_false(result_of.had_view);
    assert_int_equal(w->be.n_reads, FS_COMMIT_TRIES + 1);
}

/* Answer listing request i with the keys given (NULL-terminated). */
static void page(world *w, uint32_t i, bool more, const char **keys)
{
    fs_entry_view e[8];
    uint32_t n = 0;
    for (; keys[n]; n++)
        e[n] = (fs_entry_view){ .key = keys[n], .key_len = strlen(keys[n]),
                                .meta = meta(500 + n, 1, 1) };
    fs_dir_page p = { .entries = e, .n = n, .more = more };
    w->be.lists[i].done(w->be.lists[i].arg, 0, &p);
}

static int listed_result = 1;

static void then_listed(fs_wait *wt, int result)
{
    listed_result = result;
    fs_wait_free(wt);
}

/* A listing is gathered page by page: the first at a read point, the
 * rest from the applied state after the last key of the page before;
 * files created here and not committed are listed once, in order. */
static void test_a_listing_is_gathered_in_pages(void **st)
{
    world *w = *st;
    fs_inode *p1 = fs_inode_get_or_add(w->f->inodes, "b2", 2);
    fs_inode *p2 = fs_inode_get_or_add(w->f->inodes, "a0", 2);
    fs_ofile dummy = { 0 };
    p1->of = p2->of = &dummy;
    fs_handle *h = fs_handle_new(w->f, FS_H_DIR_ROOT);
    assert_non_null(h);
    fs_wait *wt = fs_wait_new(w->f, NULL, then_listed);
    wt->h = h;                      /* takes the handle's first reference */
    h->refs++;                      /* the test's own */
    listed_result = 1;
    fs_dir_list(wt);
    assert_int_equal(w->be.n_lists, 1);
    assert_string_equal(w->be.lists[0].after, "");
    assert_int_equal(w->be.lists[0].flags, 0);
    assert_int_equal(w->be.lists[0].max, FS_LIST_MAX);
    const char *first[] = { "a", "b", NULL };
    page(w, 0, true, first);
    assert_int_equal(listed_result, 1);
    assert_int_equal(w->be.n_lists, 2);
    assert_string_equal(w->be.lists[1].after, "b");
    assert_int_equal(w->be.lists[1].flags, FS_READ_APPLIED);
    const char *second[] = { "b2", "c", NULL };      /* b2 committed too */
    page(w, 1, false, second);
    assert_int_equal(listed_result, 0);
    const char *want[] = { "a", "a0", "b", "b2", "c" };
    assert_int_equal(h->names.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(h->names.v[i], want[i]);
    /* nothing committed: the pending files alone */
    wt = fs_wait_new(w->f, NULL, then_listed);
    wt->h = h;
    h->refs++;
    listed_result = 1;
    fs_dir_list(wt);
    const char *none[] = { NULL };
    page(w, 2, false, none);
    assert_int_equal(listed_result, 0);
    assert_int_equal(h->names.n, 2);
    assert_string_equal(h->names.v[0], "a0");
    assert_string_equal(h->names.v[1], "b2");
    fs_handle_unref(h);
    p1->of = p2->of = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_inodes_follow_their_files_by_the_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_pending_file_notes_what_its_key_holds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_read_follows_its_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_removed_file_reads_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_uncommitted_file_takes_a_read_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rereads_are_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_listing_is_gathered_in_pages,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

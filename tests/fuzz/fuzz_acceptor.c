/*
 * fuzz_acceptor.c - libFuzzer target for the acceptor store's log replay
 * (chain/acceptor.c): the input becomes DIR/acceptor/log, which is opened
 * exactly as a node opens it at start-up (real files, on tmpfs when there
 * is one), then used and reopened.
 *
 * Input layout:
 *   0     1   ops: bit 0 put a higher promise, bit 1 put an accept for a
 *             new slot, bit 2 compact, bit 3 the smallest log bound (so
 *             the compaction rolls to a fresh log)
 *   1     1   compact up to this slot (255: every slot)
 *   rest      the log file
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. open either succeeds or answers -EBADMSG with a damage report
 *       naming the log, an offset inside it and a reason;
 *   P3. the recovered state is well formed: slots strictly ascending and
 *       non-zero, known kinds, sizes within bounds;
 *   P4. replay is stable: reopening gives the same state (the open cut
 *       any torn tail for good);
 *   P5. what is put, synced and compacted after the open is what the
 *       next open recovers.
 */
#include "fuzz_util.h"

#include "../../chain/chain.h"

typedef struct model {
    px_ballot promise;
    uint32_t n;
    px_entry *e;      /* data copied */
} model;

static void model_free(model *m)
{
    for (uint32_t i = 0; i < m->n; i++)
        free((void *)m->e[i].data);
    free(m->e);
    memset(m, 0, sizeof *m);
}

static void model_take(model *m, const acceptor_state *st)
{
    m->promise = st->promise;
    m->n = st->n_accepts;
    m->e = calloc(m->n + 1, sizeof *m->e);
    CHECK(m->e != NULL);
    for (uint32_t i = 0; i < m->n; i++) {
        m->e[i] = st->accepts[i];
        m->e[i].data = fuzz_copy(st->accepts[i].data, st->accepts[i].len);
    }
}

static void check_state(const acceptor_state *st)
{
    for (uint32_t i = 0; i < st->n_accepts; i++) {
        const px_entry *e = &st->accepts[i];
        CHECK(e->slot != 0);
        CHECK(i == 0 || e->slot > st->accepts[i - 1].slot);
        CHECK(e->kind <= PX_ENTRY_LAST);
        CHECK(e->len <= PX_MAX_VALUE_BYTES);
        CHECK(e->len == 0 || e->data != NULL);
    }
}

static void check_same(const model *m, const acceptor_state *st)
{
    CHECK(st->promise.round == m->promise.round &&
          st->promise.node_id == m->promise.node_id);
    CHECK(st->n_accepts == m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        const px_entry *a = &m->e[i], *b = &st->accepts[i];
        CHECK(a->slot == b->slot && a->time_ms == b->time_ms);
        CHECK(a->ballot.round == b->ballot.round &&
              a->ballot.node_id == b->ballot.node_id);
        CHECK(a->kind == b->kind && a->len == b->len);
        CHECK(a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
    }
}

static void model_forget(model *m, uint64_t upto)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->e[i].slot <= upto)
            free((void *)m->e[i].data);
        else
            m->e[keep++] = m->e[i];
    }
    m->n = keep;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cursor in = { data, size };
    uint8_t ops = (uint8_t)fuzz_take(&in, 1);
    uint8_t upto_byte = (uint8_t)fuzz_take(&in, 1);
    uint64_t upto = upto_byte == 255 ? UINT64_MAX : upto_byte;

    const char *dir = fuzz_fresh_dir();
    char path[480];
    snprintf(path, sizeof path, "%s/acceptor", dir);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/acceptor/log", dir);
    fuzz_write_file(path, in.p, in.left, 0644);

    /* P2, P3 */
    acceptor_store *a = NULL;
    acceptor_state st;
    chain_damage damage;
    int rc = acceptor_open(dir, &a, &st, &damage);
    CHECK(rc == 0 || rc == -EBADMSG);
    if (rc) {
        CHECK(strcmp(damage.path, path) == 0 && damage.reason[0]);
        CHECK(damage.offset <= in.left);   /* a log cut right after a record: damage at its end */
        return 0;
    }
    check_state(&st);
    model m;
    model_take(&m, &st);
    acceptor_close(a);

    /* P4 */
    CHECK(acceptor_open(dir, &a, &st, &damage) == 0);
    check_same(&m, &st);

    /* P5.  A small log bound keeps the preallocation small (it is an
     * eighth of the bound, at least 4 KiB): a megabyte of zeros per input
     * would make the run slow. */
    acceptor_set_log_bytes(a, (ops & 8) ? 1 : 32768);
    if ((ops & 1) && m.promise.round < UINT64_MAX) {
        m.promise.round++;
        CHECK(acceptor_put_promise(a, m.promise) == 0);
    }
    uint64_t last = m.n ? m.e[m.n - 1].slot : 0;
    if ((ops & 2) && last < UINT64_MAX) {
        static const uint8_t value[] = "accepted";
        px_entry e = { .slot = last + 1, .ballot = m.promise, .time_ms = 7,
                       .kind = PX_ENTRY_BATCH, .len = sizeof value,
                       .data = value };
        CHECK(acceptor_put_accept(a, &e) == 0);
        e.data = fuzz_copy(value, sizeof value);
        m.e[m.n++] = e;
    }
    CHECK(acceptor_sync(a) == 0);
    if (ops & 4) {
        CHECK(acceptor_compact(a, upto) == 0);
        model_forget(&m, upto);
        CHECK(acceptor_sync(a) == 0);
    }
    acceptor_get_state(a, &st);
    check_same(&m, &st);
    acceptor_close(a);

    CHECK(acceptor_open(dir, &a, &st, &damage) == 0);
    check_state(&st);
    check_same(&m, &st);
    acceptor_close(a);
    model_free(&m);
    return 0;
}

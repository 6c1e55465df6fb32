/*
 * test_net_admin.c - the admin socket's deferred answers (net/admin.h):
 * a request answered later (admin_defer, then admin_answer) reaches the
 * caller and nothing else is read meanwhile; one answered while its
 * handler still runs is replied at once.  Real ZeroMQ sockets in a
 * scratch directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "../../net/admin.h"
#include "tmpdir.h"

typedef struct call {
    const char *dir;
    const char *request;
    char *reply;
    int rc;
    pthread_t thread;
} call;

static void *do_call(void *arg)
{
    call *c = arg;
    c->rc = admin_call(c->dir, c->request, 10000, &c->reply);
    return NULL;
}

static void call_start(call *c, const char *dir, const char *request)
{
    memset(c, 0, sizeof *c);
    c->dir = dir;
    c->request = request;
    assert_int_equal(pthread_create(&c->thread, NULL, do_call, c), 0);
}

typedef struct served {
    admin *a;
    int n;
    char last[64];
    bool early;        /* answer inside the handler */
} served;

static void handler(void *arg, const char *request, char **reply)
{
    served *s = arg;
    s->n++;
    snprintf(s->last, sizeof s->last, "%s", request);
    if (strcmp(request, "later") == 0 || strcmp(request, "early") == 0) {
        admin_defer(s->a);
        if (s->early)
            assert_int_equal(admin_answer(s->a, "answered early"), 0);
        *reply = strdup("dropped");   /* a deferred reply is not sent */
        return;
    }
    *reply = strdup("ok");
}

static void nap(void)
{
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
}

/* Serve until the handler ran `n` times (or 5 s passed). */
static void serve_until(served *s, int n)
{
    for (int i = 0; i < 2500 && s->n < n; i++) {
        admin_serve(s->a, handler, s);
        nap();
    }
    assert_int_equal(s->n, n);
}

static void test_deferred_answer(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    void *ctx = zmq_ctx_new();
    char err[256];
    served s = { 0 };
    assert_int_equal(admin_open(ctx, dir, &s.a, err, sizeof err), 0);

    call first, second;
    call_start(&first, dir, "later");
    serve_until(&s, 1);
    assert_true(admin_waiting(s.a));
    /* meanwhile a second request waits: nothing is read */
    call_start(&second, dir, "status");
    for (int i = 0; i < 100; i++) {
        assert_false(admin_serve(s.a, handler, &s));
        nap();
    }
    assert_int_equal(s.n, 1);
    assert_int_equal(admin_answer(s.a, "answered later"), 0);
    assert_int_equal(pthread_join(first.thread, NULL), 0);
    assert_int_equal(first.rc, 0);
    assert_string_equal(first.reply, "answered later");
    assert_false(admin_waiting(s.a));
    assert_int_equal(admin_answer(s.a, "again"), -EALREADY);
    serve_until(&s, 2);
    assert_int_equal(pthread_join(second.thread, NULL), 0);
    assert_string_equal(second.reply, "ok");

    /* answered while the handler still runs: replied at once */
    s.early = true;
    call third;
    call_start(&third, dir, "early");
    serve_until(&s, 3);
    assert_false(admin_waiting(s.a));
    assert_int_equal(pthread_join(third.thread, NULL), 0);
    assert_int_equal(third.rc, 0);
    assert_string_equal(third.reply, "answered early");

    free(first.reply);
    free(second.reply);
    free(third.reply);
    admin_close(s.a);
    zmq_ctx_term(ctx);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deferred_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

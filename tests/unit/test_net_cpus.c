/*
 * test_net_cpus.c - CPU lists and moving every thread of the process
 * (net/cpus.c): parsing against the CPUs this process may use, the
 * kernel's list format, and cpus_apply reaching threads other than the
 * caller.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../../net/cpus.h"

static int lowest(const cpu_set_t *set)
{
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, set))
            return c;
    return -1;
}

static void test_format_ranges(void **state)
{
    (void)state;
    cpu_set_t s;
    char out[64];
    CPU_ZERO(&s);
    assert_int_equal(cpus_format(&s, out, sizeof out), 0);
    assert_string_equal(out, "");
    CPU_SET(0, &s);
    CPU_SET(1, &s);
    CPU_SET(2, &s);
    CPU_SET(5, &s);
    CPU_SET(7, &s);
    CPU_SET(8, &s);
    assert_int_equal(cpus_format(&s, out, sizeof out), 9);
    assert_string_equal(out, "0-2,5,7-8");
    /* too small: truncated, the needed length still returned */
    assert_int_equal(cpus_format(&s, out, 4), 9);
    assert_true(strlen(out) < 4);
}

static void test_parse_what_the_process_may_use(void **state)
{
    (void)state;
    cpu_set_t allowed, got;
    char err[256], list[256];
    assert_int_equal(cpus_allowed(&allowed), 0);
    assert_true(CPU_COUNT(&allowed) >= 1);
    /* the allowed set round-trips through its own list */
    cpus_format(&allowed, list, sizeof list);
    assert_int_equal(cpus_parse(list, &got, err, sizeof err), 0);
    assert_true(CPU_EQUAL(&got, &allowed));
    char one[16];
    snprintf(one, sizeof one, "%d", lowest(&allowed));
    assert_int_equal(cpus_parse(one, &got, err, sizeof err), 0);
    assert_int_equal(CPU_COUNT(&got), 1);
    assert_true(CPU_ISSET(lowest(&allowed), &got));
}

static void test_parse_rejects_bad_lists(void **state)
{
    (void)state;
    cpu_set_t got;
    char err[256];
    const char *bad[] = { "", "x", "-1", "0-", "1-0", "0,,1", "0;1", "0 ",
                          "99999", "0-99999", "4096" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(cpus_parse(bad[i], &got, err, sizeof err), -EINVAL);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(cpus_parse(NULL, &got, err, sizeof err), -EINVAL);
    /* a CPU outside the process's set is named in the error */
    cpu_set_t allowed;
    assert_int_equal(cpus_allowed(&allowed), 0);
    int missing = -1;
    for (int c = 0; c < CPU_SETSIZE && missing < 0; c++)
        if (!CPU_ISSET(c, &allowed))
            missing = c;
    if (missing < 0)
        return;   /* every CPU there is may be used */
    char spec[16];
    snprintf(spec, sizeof spec, "%d", missing);
    assert_int_equal(cpus_parse(spec, &got, err, sizeof err), -EINVAL);
    char want[64];
    snprintf(want, sizeof want, "CPU %d is not available", missing);
    assert_non_null(strstr(err, want));
}

typedef struct probe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool checked, done;
    cpu_set_t seen;
} probe;

/* A second thread that reports its own mask when asked. */
static void *probe_thread(void *arg)
{
    probe *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->checked)
        pthread_cond_wait(&p->cond, &p->lock);
    sched_getaffinity(0, sizeof p->seen, &p->seen);
    p->done = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void test_apply_moves_every_thread(void **state)
{
    (void)state;
    cpu_set_t allowed, one;
    assert_int_equal(cpus_allowed(&allowed), 0);
    CPU_ZERO(&one);
    CPU_SET(lowest(&allowed), &one);

    probe p = { .lock = PTHREAD_MUTEX_INITIALIZER,
                .cond = PTHREAD_COND_INITIALIZER };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_thread, &p), 0);
    int moved = cpus_apply(&one);
    assert_true(moved >= 2);   /* this thread and the probe */
    pthread_mutex_lock(&p.lock);
    p.checked = true;
    pthread_cond_broadcast(&p.cond);
    while (!p.done)
        pthread_cond_wait(&p.cond, &p.lock);
    pthread_mutex_unlock(&p.lock);
    pthread_join(t, NULL);
    assert_true(CPU_EQUAL(&p.seen, &one));
    cpu_set_t mine;
    assert_int_equal(cpus_allowed(&mine), 0);
    assert_true(CPU_EQUAL(&mine, &one));

    /* and back: every thread may use everything again */
    assert_true(cpus_apply(&allowed) >= 1);
    assert_int_equal(cpus_allowed(&mine), 0);
    assert_true(CPU_EQUAL(&mine, &allowed));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_ranges),
        cmocka_unit_test(test_parse_what_the_process_may_use),
        cmocka_unit_test(test_parse_rejects_bad_lists),
        cmocka_unit_test(test_apply_moves_every_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

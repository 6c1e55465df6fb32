/*
 * test_net_worker.c - the background job thread (net/worker.c): one job
 * at a time, its result collected after the wake fd fires, destroy waits
 * for a running job.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "../../net/worker.h"

typedef struct job {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool release;       /* the job may return */
    bool ran;
    pthread_t thread;
    int result;
} job;

static int run_job(void *arg)
{
    job *j = arg;
    pthread_mutex_lock(&j->lock);
    j->thread = pthread_self();
    j->ran = true;
    while (!j->release)
        pthread_cond_wait(&j->cond, &j->lock);
    pthread_mutex_unlock(&j->lock);
    return j->result;
}

static void release(job *j)
{
    pthread_mutex_lock(&j->lock);
    j->release = true;
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static void test_one_job_at_a_time(void **state)
{
    (void)state;
    worker *w;
    assert_int_equal(worker_create(&w), 0);
    int rc = 0;
    assert_false(worker_busy(w));
    assert_false(worker_take(w, &rc));        /* nothing submitted */
    job j = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false,
              false, 0, -EIO };
    assert_int_equal(worker_submit(w, run_job, &j), 0);
    assert_true(worker_busy(w));
    assert_int_equal(worker_submit(w, run_job, &j), -EBUSY);
    assert_false(worker_take(w, &rc));        /* still running */
    release(&j);
    struct pollfd p = { .fd = worker_wake_fd(w), .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(worker_take(w, &rc));
    assert_int_equal(rc, -EIO);
    assert_true(j.ran);
    assert_false(pthread_equal(j.thread, pthread_self()));
    assert_false(worker_busy(w));
    /* idle again: a second job runs */
    job k = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true,
              false, 0, 7 };
    assert_int_equal(worker_submit(w, run_job, &k), 0);
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(worker_take(w, &rc));
    assert_int_equal(rc, 7);
    worker_destroy(w);
}

static void *release_later(void *arg)
{
    usleep(20000);
    release(arg);
    return NULL;
}

static void test_destroy_waits_for_running_job(void **state)
{
    (void)state;
    worker *w;
    assert_int_equal(worker_create(&w), 0);
    job j = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false,
              false, 0, 0 };
    assert_int_equal(worker_submit(w, run_job, &j), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_later, &j), 0);
    worker_destroy(w);   /* returns only after the job returned */
    pthread_mutex_lock(&j.lock);
    assert_true(j.ran && j.release);
    pthread_mutex_unlock(&j.lock);
    pthread_join(t, NULL);
}

static int manual_rc_job(void *arg)
{
    int *calls = arg;
    (*calls)++;
    return -ENOSPC;
}

static int started_calls, started_kind;

static void on_started(void *arg, int kind, bool begin)
{
    (void)arg;
    if (begin) {
        started_calls++;
        started_kind = kind;
    }
}

/* Manual mode (the simulator's): the job runs at submit on the caller's
 * thread, and is finished only once the owner says so. */
static void test_manual_job_finishes_when_told(void **state)
{
    (void)state;
    worker *w;
    assert_int_equal(worker_create_manual(on_started, NULL, 2, &w), 0);
    assert_int_equal(worker_wake_fd(w), -1);
    int calls = 0, rc = 0;
    assert_int_equal(worker_submit(w, manual_rc_job, &calls), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(started_calls, 1);
    assert_int_equal(started_kind, 2);
    assert_true(worker_busy(w));
    assert_false(worker_take(w, &rc));
    assert_int_equal(worker_submit(w, manual_rc_job, &calls), -EBUSY);
    worker_complete(w);
    assert_true(worker_take(w, &rc));
    assert_int_equal(rc, -ENOSPC);
    assert_false(worker_busy(w));
    worker_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_job_at_a_time),
        cmocka_unit_test(test_destroy_waits_for_running_job),
        cmocka_unit_test(test_manual_job_finishes_when_told),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

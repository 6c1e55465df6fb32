/*
 * test_net_health.c - the persist-health state machine (net/health.c)
 * with a fake clock, a scripted probe and a log that records its lines:
 * a failure is logged once, retries back off exponentially up to the cap
 * and are counted, not logged, while their error stays the same; a passed
 * probe asks the owner to reopen exactly once; a reopen that fails is one
 * more retry; a failure soon after a recovery does not retry faster; and
 * the real probe needs space, a working fdatasync and spare descriptors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "../../net/health.h"
#include "tmpdir.h"

/* ------------------------------------------------------------- fakes */

static int script[64];          /* probe results, in order */
static int n_script, next_script, probes;
static char lines[32][1100];
static int prios[32];
static int n_lines;

static int fake_probe(const char *dir)
{
    (void)dir;
    probes++;
    return next_script < n_script ? script[next_script++] : 0;
}

static void fake_log(void *arg, int priority, const char *line)
{
    (void)arg;
    if (n_lines < 32) {
        snprintf(lines[n_lines], sizeof lines[n_lines], "%s", line);
        prios[n_lines] = priority;
    }
    n_lines++;
}

static void reset_fakes(void)
{
    n_script = next_script = probes = n_lines = 0;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Poll at `now` until the probe in progress finished (real time bound:
 * the probe runs on the health thread).  Returns health_poll's answer. */
static bool finish_probe(health *h, uint64_t now)
{
    uint64_t deadline = wall_ms() + 5000;
    while (h->state == HEALTH_PROBING) {
        if (health_poll(h, now))
            return true;
        assert_true(wall_ms() < deadline);
        usleep(1000);
    }
    return false;
}

/* ------------------------------------------------------------- tests */

static void test_failure_backoff_and_recovery(void **state)
{
    (void)state;
    reset_fakes();
    health h;
    assert_int_equal(health_init(&h, 3, "/nonexistent", fake_probe,
                                 fake_log, NULL), 0);
    assert_true(health_ok(&h));
    uint64_t t = 1000;
    health_fail(&h, "chain append", -ENOSPC, t);
    assert_false(health_ok(&h));
    assert_int_equal(h.state, HEALTH_FAILED);
    assert_int_equal(n_lines, 1);
    assert_int_equal(prios[0], LOG_ERR);
    assert_non_null(strstr(lines[0], "node 3: cannot persist: chain append "
                                     "failed: No space left on device"));
    assert_non_null(strstr(lines[0], "fail with ENOSPC"));
    /* a second failure report while failed is a retry, not a new one */
    for (int i = 0; i < 5; i++)
        script[n_script++] = -ENOSPC;
    uint64_t expect = HEALTH_BACKOFF_MIN_MS;
    for (int i = 0; i < 5; i++) {
        /* nothing before the back-off passed */
        assert_false(health_poll(&h, t + expect - 1));
        assert_int_equal(h.state, HEALTH_FAILED);
        t += expect;
        assert_false(health_poll(&h, t));
        assert_int_equal(h.state, HEALTH_PROBING);
        assert_false(finish_probe(&h, t));
        assert_int_equal(h.state, HEALTH_FAILED);
        assert_int_equal(h.retries, (uint64_t)i + 1);
        expect = expect * 2 > HEALTH_BACKOFF_MAX_MS ? HEALTH_BACKOFF_MAX_MS
                                                    : expect * 2;
        assert_int_equal(h.backoff_ms, expect);
    }
    assert_int_equal(h.backoff_ms, HEALTH_BACKOFF_MAX_MS);   /* capped */
    assert_int_equal(probes, 5);
    assert_int_equal(n_lines, 1);   /* same error: counted, not logged */
    /* the probe passes: reopen, once */
    t += expect;
    assert_false(health_poll(&h, t));
    assert_true(finish_probe(&h, t));
    assert_int_equal(h.state, HEALTH_REOPEN);
    assert_false(health_poll(&h, t + 10000));   /* no second probe */
    assert_int_equal(probes, 6);
    health_recovered(&h, t + 5);
    assert_true(health_ok(&h));
    assert_int_equal(n_lines, 2);
    assert_int_equal(prios[1], LOG_NOTICE);
    assert_non_null(strstr(lines[1], "storage works again"));
    assert_non_null(strstr(lines[1], "5 retries"));
    assert_non_null(strstr(lines[1], "it had failed: chain append: No space"));
    assert_int_equal(h.failures, 1);
    assert_int_equal(h.recoveries, 1);
    health_fini(&h);
}

static void test_reopen_failure_is_a_retry(void **state)
{
    (void)state;
    reset_fakes();
    health h;
    assert_int_equal(health_init(&h, 1, "/nonexistent", fake_probe,
                                 fake_log, NULL), 0);
    uint64_t t = 50;
    health_fail(&h, "chain fdatasync", -EMFILE, t);
    assert_int_equal(health_client_errno(h.err), -EIO);
    assert_non_null(strstr(lines[0], "fail with EIO"));
    t += HEALTH_BACKOFF_MIN_MS;
    health_poll(&h, t);
    assert_true(finish_probe(&h, t));
    /* the owner could not reopen: another error, logged as such */
    health_fail(&h, "reopening the chain", -EBADMSG, t);
    assert_int_equal(h.state, HEALTH_FAILED);
    assert_int_equal(h.retries, 1);
    assert_int_equal(h.err, -EMFILE);         /* the cause stays */
    assert_int_equal(h.retry_err, -EBADMSG);
    assert_int_equal(n_lines, 2);
    assert_int_equal(prios[1], LOG_WARNING);
    assert_non_null(strstr(lines[1], "reopening the chain"));
    assert_int_equal(h.backoff_ms, 2 * HEALTH_BACKOFF_MIN_MS);
    /* the same error again within the minute: not logged */
    t += h.backoff_ms;
    health_poll(&h, t);
    assert_true(finish_probe(&h, t));
    health_fail(&h, "reopening the chain", -EBADMSG, t);
    assert_int_equal(n_lines, 2);
    /* ... and a minute later once more */
    t += HEALTH_RETRY_LOG_MS;
    health_poll(&h, t);
    assert_true(finish_probe(&h, t));
    health_fail(&h, "reopening the chain", -EBADMSG, t);
    assert_int_equal(n_lines, 3);
    assert_non_null(strstr(lines[2], "3 retries"));
    health_fini(&h);
}

/* A disk that fails again right after it seemed to work is retried no
 * faster than before; a failure long after a recovery starts over. */
static void test_flapping_keeps_the_backoff(void **state)
{
    (void)state;
    reset_fakes();
    health h;
    assert_int_equal(health_init(&h, 1, "/nonexistent", fake_probe,
                                 fake_log, NULL), 0);
    uint64_t t = 10;
    for (int round = 0; round < 6; round++) {
        health_fail(&h, "chain append", -EIO, t);
        uint64_t wait = h.backoff_ms;
        assert_int_equal(wait, round == 0 ? HEALTH_BACKOFF_MIN_MS
                         : (HEALTH_BACKOFF_MIN_MS << round) >
                           HEALTH_BACKOFF_MAX_MS ? HEALTH_BACKOFF_MAX_MS
                         : HEALTH_BACKOFF_MIN_MS << round);
        t += wait;
        health_poll(&h, t);
        assert_true(finish_probe(&h, t));
        health_recovered(&h, t);
        t += 1000;                    /* fails again a second later */
    }
    assert_int_equal(h.failures, 6);
    t += HEALTH_FLAP_MS;
    health_fail(&h, "chain append", -EIO, t);
    assert_int_equal(h.backoff_ms, HEALTH_BACKOFF_MIN_MS);
    health_fini(&h);
}

static void test_client_errno(void **state)
{
    (void)state;
    assert_int_equal(health_client_errno(-ENOSPC), -ENOSPC);
    assert_int_equal(health_client_errno(-EDQUOT), -EDQUOT);
    assert_int_equal(health_client_errno(-EIO), -EIO);
    assert_int_equal(health_client_errno(-EMFILE), -EIO);
    assert_int_equal(health_client_errno(-ENFILE), -EIO);
    assert_int_equal(health_client_errno(-EROFS), -EIO);
}

static void test_status_json(void **state)
{
    (void)state;
    reset_fakes();
    health h;
    assert_int_equal(health_init(&h, 2, "/nonexistent", fake_probe,
                                 fake_log, NULL), 0);
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    health_status_json(&h, fp, 100);
    fclose(fp);
    assert_string_equal(buf, "\"storage\":{\"state\":\"ok\",\"failures\":0,"
                             "\"recoveries\":0}");
    free(buf);
    health_fail(&h, "acceptor fdatasync", -EIO, 1000);
    fp = open_memstream(&buf, &size);
    health_status_json(&h, fp, 1030);
    fclose(fp);
    assert_non_null(strstr(buf, "\"state\":\"failed\""));
    assert_non_null(strstr(buf, "\"what\":\"acceptor fdatasync\""));
    assert_non_null(strstr(buf, "\"errno\":5"));
    assert_non_null(strstr(buf, "\"error\":\"Input/output error\""));
    assert_non_null(strstr(buf, "\"since_ms_ago\":30"));
    assert_non_null(strstr(buf, "\"next_retry_in_ms\":70"));
    assert_non_null(strstr(buf, "\"retries\":0"));
    free(buf);
    health_fini(&h);
}

/* The real probe: passes in a working directory (and leaves nothing
 * behind), fails where it cannot write, and fails with EMFILE when fewer
 * than HEALTH_PROBE_FDS descriptors are left. */
static void test_probe_dir(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    assert_int_equal(health_probe_dir(dir), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, HEALTH_PROBE_NAME);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(health_probe_dir(path), -ENOENT);

    struct rlimit rl, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int probe_fd = dup(0);
    assert_true(probe_fd >= 0);
    close(probe_fd);
    low = rl;
    low.rlim_cur = (rlim_t)probe_fd + 4;   /* room for the file, not more */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = health_probe_dir(dir);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_int_equal(rc, -EMFILE);
    snprintf(path, sizeof path, "%s/%s", dir, HEALTH_PROBE_NAME);
    assert_int_equal(access(path, F_OK), -1);
    rm_tree(dir);
}

/* The SigBlk mask of every thread of this process but `skip`: a thread
 * with SIGTERM unblocked could take a stop signal meant for the node's
 * signalfd and kill the process. */
static int threads_taking_sigterm(void)
{
    int count = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "SigBlk:", 7) == 0) {
                unsigned long long mask = strtoull(line + 7, NULL, 16);
                count += !(mask & (1ull << (SIGTERM - 1)));
            }
        fclose(f);
    }
    closedir(d);
    return count;
}

/* node_open starts the health thread before node_mount blocks the stop
 * signals: the thread must block them itself. */
static void test_health_thread_takes_no_signal(void **state)
{
    (void)state;
    int before = threads_taking_sigterm();
    assert_true(before >= 1);                /* this thread */
    reset_fakes();
    health h;
    assert_int_equal(health_init(&h, 1, "/nonexistent", fake_probe,
                                 fake_log, NULL), 0);
    /* once it ran a probe the thread has its own signal mask for sure
     * (a thread starts with every signal blocked until it runs) */
    health_fail(&h, "chain append", -EIO, 0);
    health_poll(&h, HEALTH_BACKOFF_MIN_MS);
    assert_true(finish_probe(&h, HEALTH_BACKOFF_MIN_MS));
    assert_int_equal(probes, 1);
    assert_int_equal(threads_taking_sigterm(), before);
    health_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_backoff_and_recovery),
        cmocka_unit_test(test_reopen_failure_is_a_retry),
        cmocka_unit_test(test_flapping_keeps_the_backoff),
        cmocka_unit_test(test_client_errno),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_probe_dir),
        cmocka_unit_test(test_health_thread_takes_no_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

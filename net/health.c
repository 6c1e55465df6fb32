/*
 * health.c - owns the persist-health state machine of a node (see
 * health.h): the failure, the back-off, the probe on its own thread, the
 * log lines and the .status fields.
 */
#include "health.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "json.h"

#include "worker.h"

/* ---------------------------------------------------------------- log */

static void default_log(void *arg, int priority, const char *line)
{
    (void)arg;
    fprintf(stderr, "paxosfs: %s\n", line);
    syslog(priority, "%s", line);
}

static void say(health *h, int priority, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(health *h, int priority, const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "node %u: ", h->node_id);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    h->log(h->log_arg, priority, line);
}

/* --------------------------------------------------------------- probe */

static int probe_write(int fd)
{
    static const uint8_t zeros[64 << 10];
    for (uint64_t off = 0; off < HEALTH_PROBE_BYTES;) {
        ssize_t w = pwrite(fd, zeros, sizeof zeros, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        off += (uint64_t)w;
    }
    return fdatasync(fd) == 0 ? 0 : -errno;
}

int health_probe_dir(const char *dir)
{
    char path[600];
    int n = snprintf(path, sizeof path, "%s/%s", dir, HEALTH_PROBE_NAME);
    if (n < 0 || (size_t)n >= sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* reopening the stores takes descriptors too: want some to spare */
    int spare[HEALTH_PROBE_FDS];
    int k = 0, rc = 0;
    for (; k < HEALTH_PROBE_FDS; k++) {
        spare[k] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (spare[k] < 0) {
            rc = -errno;
            break;
        }
    }
    while (k > 0)
        close(spare[--k]);
    if (rc == 0)
        rc = probe_write(fd);
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (unlink(path) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0) {
        int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
            return -errno;
        if (fsync(d) != 0)
            rc = -errno;
        close(d);
    }
    return rc;
}

/* ------------------------------------------------------------- thread */

static int run_probe(void *arg)
{
    health *h = arg;   /* reads only dir and probe, fixed at init */
    return h->probe(h->dir);
}

int health_init(health *h, uint32_t node_id, const char *dir,
                health_probe_fn probe, health_log_fn log, void *log_arg)
{
    memset(h, 0, sizeof *h);
    h->node_id = node_id;
    int n = snprintf(h->dir, sizeof h->dir, "%s", dir);
    if (n < 0 || (size_t)n >= sizeof h->dir)
        return -ENAMETOOLONG;
    h->probe = probe ? probe : health_probe_dir;
    h->log = log ? log : default_log;
    h->log_arg = log_arg;
    if (!log)   /* connect now: a node out of descriptors may not later */
        openlog("paxosfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    h->state = HEALTH_OK;
    /* a probe left behind by a crash in the middle of one */
    char path[600];
    n = snprintf(path, sizeof path, "%s/%s", dir, HEALTH_PROBE_NAME);
    if (n > 0 && (size_t)n < sizeof path)
        (void)unlink(path);
    /* the thread takes no signal: a stop signal must reach the loop's
     * signalfd, whenever the owner blocks it (node_mount, after us) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = worker_create(&h->thread);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void health_fini(health *h)
{
    worker_destroy(h->thread);   /* waits for a probe in progress */
    h->thread = NULL;
}

bool health_ok(const health *h)
{
    return h->state == HEALTH_OK;
}

int health_client_errno(int err)
{
    if (err == -ENOSPC || err == -EDQUOT)
        return err;
    return -EIO;
}

/* ---------------------------------------------------------- decisions */

static void set_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "?");
}

static void retry_failed(health *h, const char *what, int err, uint64_t now)
{
    h->retries++;
    h->retry_err = err;
    set_text(h->retry_what, sizeof h->retry_what, what);
    h->backoff_ms *= 2;
    if (h->backoff_ms > HEALTH_BACKOFF_MAX_MS)
        h->backoff_ms = HEALTH_BACKOFF_MAX_MS;
    if (h->backoff_ms < HEALTH_BACKOFF_MIN_MS)
        h->backoff_ms = HEALTH_BACKOFF_MIN_MS;
    h->next_ms = now + h->backoff_ms;
    h->state = HEALTH_FAILED;
    if (err != h->logged_err || now - h->logged_ms >= HEALTH_RETRY_LOG_MS) {
        h->logged_err = err;
        h->logged_ms = now;
        say(h, LOG_WARNING, "storage still fails after %" PRIu64 " retries "
            "in %.1f s: %s: %s; retrying every %" PRIu64 " ms", h->retries,
            (double)(now - h->since_ms) / 1000.0, h->retry_what,
            strerror(-err), h->backoff_ms);
    }
}

void health_fail(health *h, const char *what, int err, uint64_t now_ms)
{
    if (err >= 0)
        err = -EIO;
    if (h->state != HEALTH_OK) {
        retry_failed(h, what, err, now_ms);
        return;
    }
    h->state = HEALTH_FAILED;
    h->err = err;
    set_text(h->what, sizeof h->what, what);
    h->since_ms = now_ms;
    h->retries = 0;
    h->retry_err = 0;
    h->retry_what[0] = '\0';
    h->failures++;
    /* invariant 2: a disk that fails right after a recovery is retried
     * no faster than before it */
    if (!(h->recovered_ms && now_ms - h->recovered_ms < HEALTH_FLAP_MS))
        h->backoff_ms = HEALTH_BACKOFF_MIN_MS;
    else if (h->backoff_ms < HEALTH_BACKOFF_MAX_MS)
        h->backoff_ms *= 2;
    if (h->backoff_ms > HEALTH_BACKOFF_MAX_MS)
        h->backoff_ms = HEALTH_BACKOFF_MAX_MS;
    h->next_ms = now_ms + h->backoff_ms;
    h->logged_err = err;
    h->logged_ms = now_ms;
    int client = health_client_errno(err);
    say(h, LOG_ERR, "cannot persist: %s failed: %s; not leading or voting, "
        "writes and reads on this mount fail with %s; retrying with "
        "back-off (%d ms up to %d ms)", h->what, strerror(-err),
        client == -ENOSPC ? "ENOSPC" : client == -EDQUOT ? "EDQUOT" : "EIO",
        HEALTH_BACKOFF_MIN_MS, HEALTH_BACKOFF_MAX_MS);
}

bool health_poll(health *h, uint64_t now_ms)
{
    if (h->state == HEALTH_PROBING) {
        int rc;
        if (!worker_take(h->thread, &rc))
            return false;
        if (rc == 0) {
            h->state = HEALTH_REOPEN;
            return true;
        }
        retry_failed(h, "probe (write and fdatasync in the backing "
                     "directory)", rc, now_ms);
        return false;
    }
    if (h->state != HEALTH_FAILED || now_ms < h->next_ms)
        return false;
    int stale;
    if (worker_busy(h->thread) && !worker_take(h->thread, &stale))
        return false;   /* a probe of an earlier round still runs */
    if (worker_submit(h->thread, run_probe, h) == 0)
        h->state = HEALTH_PROBING;
    return false;
}

void health_recovered(health *h, uint64_t now_ms)
{
    if (h->state == HEALTH_OK)
        return;
    h->state = HEALTH_OK;
    h->recoveries++;
    h->recovered_ms = now_ms;
    say(h, LOG_NOTICE, "storage works again after %.1f s and %" PRIu64
        " retries (it had failed: %s: %s); chain and acceptor store "
        "re-verified from disk; rejoining (catching up before voting)",
        (double)(now_ms - h->since_ms) / 1000.0, h->retries, h->what,
        strerror(-h->err));
}

/* ------------------------------------------------------------- status */

static const char *state_name(enum health_state s)
{
    switch (s) {
    case HEALTH_OK: return "ok";
    case HEALTH_FAILED: return "failed";
    case HEALTH_PROBING: return "probing";
    default: return "reopening";
    }
}

void health_status_json(const health *h, FILE *fp, uint64_t now_ms)
{
    fprintf(fp, "\"storage\":{\"state\":\"%s\",\"failures\":%" PRIu64
            ",\"recoveries\":%" PRIu64, state_name(h->state), h->failures,
            h->recoveries);
    if (h->failures) {
        fprintf(fp, ",\"what\":");
        json_string(fp, h->what);
        fprintf(fp, ",\"errno\":%d,\"error\":", -h->err);
        json_string(fp, strerror(-h->err));
        fprintf(fp, ",\"retries\":%" PRIu64, h->retries);
    }
    if (h->state != HEALTH_OK) {
        fprintf(fp, ",\"since_ms_ago\":%" PRIu64 ",\"next_retry_in_ms\":%"
                PRIu64, now_ms - h->since_ms,
                h->state == HEALTH_FAILED && h->next_ms > now_ms
                    ? h->next_ms - now_ms : 0);
        if (h->retry_err) {
            fprintf(fp, ",\"last_retry\":");
            json_string(fp, h->retry_what);
            fprintf(fp, ",\"last_retry_error\":");
            json_string(fp, strerror(-h->retry_err));
        }
    } else if (h->recovered_ms) {
        fprintf(fp, ",\"recovered_ms_ago\":%" PRIu64,
                now_ms - h->recovered_ms);
    }
    fputc('}', fp);
}

/*
 * reply.c - answers that wait for the loop's next turn: those no
 * directory lock waits for (FLUSH, FSYNC, RELEASE and WRITE) are queued
 * by the loop thread and written between the requests it reads next.
 *
 * Writing an answer to the session wakes the thread that waits for it,
 * which costs the writer several microseconds (more on a virtual
 * machine), and the woken thread often takes the loop's CPU.  The kernel
 * holds a directory's lock across the LOOKUP and CREATE of a new name, so
 * while the loop answered a batch of commits (a FLUSH each) one at a
 * time, a LOOKUP or CREATE waited behind them, and every other create in
 * that directory waited for it.  Queued, the batch's answers go out after
 * the requests that arrived meanwhile were read and dispatched
 * (node/loop.c invariant 4), and while they are written the session is
 * read again every READ_EVERY_NS.
 *
 * Invariants:
 *  1. Only the answers made through fs_reply_err_later and
 *     fs_reply_write_later are queued; every other answer (LOOKUP,
 *     CREATE, UNLINK, a read, ...) and every notification is written at
 *     once.  A queued answer is copied whole: libfuse frees the request
 *     when the session's writev returns.  If the copy cannot be made the
 *     answer is written at once (never lost).
 *  2. The loop writes every queued answer (fs_send_answers) before it
 *     waits for anything: an answer waits for the current turn at most,
 *     never for an event.  fs_unmount writes what is left.
 *  3. Answers leave in the order they were queued.  No order matters
 *     between a queued answer and one written at once: each answers its
 *     own request, and the commit a FLUSH reports was applied before its
 *     answer was queued, so a request dispatched in between already sees
 *     it (the answer only tells the caller later than it could).
 *  4. The queue holds at most one answer per request the kernel has
 *     outstanding.  Only the thread that made the answer (the loop: the
 *     flag is thread-local) touches the queue; the notifier thread's
 *     answers and notices are written at once.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fs_reply {
    struct fs_reply *next;
    size_t len;
    uint8_t data[];
};

#define READ_EVERY_NS 20000
#define READ_BATCH 64       /* requests read per look, so answers still go out */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Set around the answers fs_reply_*_later make (loop thread). */
static _Thread_local bool reply_later;

void fs_reply_err_later(fuse_req_t req, int err)
{
    reply_later = true;
    fuse_reply_err(req, err);
    reply_later = false;
}

void fs_reply_write_later(fuse_req_t req, size_t count)
{
    reply_later = true;
    fuse_reply_write(req, count);
    reply_later = false;
}

bool fs_reply_queue(fs *f, const struct iovec *iov, int count, ssize_t *n)
{
    if (!reply_later)
        return false;
    size_t len = 0;
    for (int i = 0; i < count; i++)
        len += iov[i].iov_len;
    fs_reply *r = malloc(sizeof *r + len);
    if (!r)
        return false;   /* invariant 1 */
    r->next = NULL;
    r->len = len;
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        memcpy(r->data + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    if (f->replies_tail)
        f->replies_tail->next = r;
    else
        f->replies_head = r;
    f->replies_tail = r;
    f->answers_queued++;
    *n = (ssize_t)len;
    return true;
}

/* Write the oldest queued answer.  An error is the kernel's to report:
 * ENOENT, the request was interrupted and is gone (libfuse ignores it
 * too); anything else is counted. */
static void send_one(fs *f)
{
    fs_reply *r = f->replies_head;
    f->replies_head = r->next;
    if (!f->replies_head)
        f->replies_tail = NULL;
    ssize_t n;
    do
        n = write(fuse_session_fd(f->se), r->data, r->len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != ENOENT)
        f->answers_failed++;
    free(r);
}

uint64_t fs_answers_queued(const fs *f)
{
    return f ? f->answers_queued : 0;
}

uint64_t fs_answers_failed(const fs *f)
{
    return f ? f->answers_failed : 0;
}

bool fs_has_answers(const fs *f)
{
    return f && f->replies_head;
}

int fs_send_answers(fs *f, bool read_between, uint32_t *dispatched)
{
    if (!f->replies_head)
        return 0;
    uint64_t checked = now_ns();
    while (f->replies_head) {
        send_one(f);
        if (!read_between)
            continue;
        /* a request that came meanwhile goes before the next answer;
         * looked for every READ_EVERY_NS (a read that finds nothing is a
         * system call too) */
        uint64_t now = now_ns();
        if (now - checked < READ_EVERY_NS)
            continue;
        checked = now;
        int rc = 1;
        for (int i = 0; i < READ_BATCH && rc == 1; i++) {
            rc = fs_process_one(f);
            *dispatched += rc == 1;
        }
        if (rc < 0 || rc == 2)
            return rc < 0 ? rc : 1;
    }
    return 0;
}

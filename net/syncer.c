/*
 * syncer.c - owns group commit of the acceptor store: the buffered and
 * written persist ids, write generations and the sync thread (see
 * syncer.h for the pipeline and its invariants).
 */
#include "syncer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct syncer {
    acceptor_store *store;
    /* caller's thread only */
    uint64_t *buffered;         /* persist ids noted, not yet written */
    uint32_t n_buffered, cap_buffered;
    uint64_t *ids, *gens;       /* written: FIFO of (persist id, generation) */
    uint32_t head, n, cap;
    uint64_t write_gen;         /* newest generation written */
    /* shared with the sync thread, under lock */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t published_gen;     /* newest generation the thread may sync */
    uint64_t synced_gen;        /* durable up to here */
    bool running;               /* inside fdatasync */
    uint64_t syncs;             /* fdatasyncs done */
    bool stop;
    int result;                 /* first failure, sticky (invariant 2) */
    int wake_fd;                /* eventfd, readable after each sync */
    /* manual mode (no thread): the sync started and its outcome */
    bool manual;
    syncer_run_fn run_fn;
    void *started_arg;
    int started_kind;
    uint64_t manual_target;     /* generation the running sync covers */
    int manual_rc;              /* what its fdatasync returned */
};

static void *syncer_main(void *arg)
{
    syncer *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->published_gen == s->synced_gen && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->published_gen == s->synced_gen)
            break;   /* stopping, and everything written is durable */
        uint64_t target = s->published_gen;
        s->running = true;
        pthread_mutex_unlock(&s->lock);
        int rc = acceptor_datasync(s->store);
        pthread_mutex_lock(&s->lock);
        s->running = false;
        s->syncs++;
        if (rc < 0 && !s->result)
            s->result = rc;
        if (rc == 0)
            s->synced_gen = target;
        uint64_t one = 1;
        if (write(s->wake_fd, &one, sizeof one) < 0)
            fprintf(stderr, "paxosfs: sync thread cannot wake the loop: %s\n",
                    strerror(errno));
        if (rc < 0)
            break;   /* the owner stops all writes; nothing more to sync */
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int syncer_create(acceptor_store *store, syncer **out)
{
    syncer *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->store = store;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0) {
        int rc = -errno;
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->thread, NULL, syncer_main, s) != 0) {
        syncer_destroy(s);
        return -EAGAIN;
    }
    s->started = true;
    *out = s;
    return 0;
}

int syncer_create_manual(acceptor_store *store, syncer_run_fn run,
                         void *arg, int kind, syncer **out)
{
    syncer *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->store = store;
    s->wake_fd = -1;
    s->manual = true;
    s->run_fn = run;
    s->started_arg = arg;
    s->started_kind = kind;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    *out = s;
    return 0;
}

/* Manual mode: what the thread does when it wakes, up to the fdatasync's
 * return, which counts only at syncer_complete. */
static void manual_start(syncer *s)
{
    s->manual_target = s->published_gen;
    s->running = true;
    if (s->run_fn)
        s->run_fn(s->started_arg, s->started_kind, true);
    s->manual_rc = acceptor_datasync(s->store);
    if (s->run_fn)
        s->run_fn(s->started_arg, s->started_kind, false);
}

void syncer_complete(syncer *s)
{
    if (!s->manual || !s->running)
        return;
    s->running = false;
    s->syncs++;
    if (s->manual_rc < 0 && !s->result)
        s->result = s->manual_rc;
    if (s->manual_rc == 0)
        s->synced_gen = s->manual_target;
    if (s->manual_rc == 0 && s->published_gen != s->synced_gen)
        manual_start(s);   /* newer generations: at once, as the thread */
}

void syncer_destroy(syncer *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->buffered);
    free(s->ids);
    free(s->gens);
    free(s);
}

int syncer_reset(syncer *s, acceptor_store *store)
{
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    syncer_ack_wake(s);
    s->store = store;
    s->n_buffered = 0;
    s->head = s->n = 0;
    s->write_gen = 0;
    s->published_gen = s->synced_gen = 0;
    s->running = false;   /* manual mode: a sync that ran never counts */
    s->stop = false;
    s->result = 0;
    s->manual_target = 0;
    s->manual_rc = 0;
    if (s->manual)
        return 0;
    if (pthread_create(&s->thread, NULL, syncer_main, s) != 0)
        return -EAGAIN;
    s->started = true;
    return 0;
}

int syncer_wake_fd(const syncer *s)
{
    return s->wake_fd;
}

int syncer_note(syncer *s, uint64_t id)
{
    if (s->n_buffered == s->cap_buffered) {
        uint32_t cap = s->cap_buffered ? s->cap_buffered * 2 : 64;
        uint64_t *b = realloc(s->buffered, cap * sizeof *b);
        if (!b)
            return -ENOMEM;
        s->buffered = b;
        s->cap_buffered = cap;
    }
    s->buffered[s->n_buffered++] = id;
    return 0;
}

bool syncer_pending(const syncer *s)
{
    return s->n_buffered || s->n || acceptor_pending_bytes(s->store);
}

bool syncer_idle(syncer *s)
{
    pthread_mutex_lock(&s->lock);
    bool idle = !s->running && s->synced_gen == s->write_gen;
    pthread_mutex_unlock(&s->lock);
    return idle;
}

/* Room for `more` written ids: compact the FIFO or grow it. */
static int written_reserve(syncer *s, uint32_t more)
{
    if (s->head + s->n + more <= s->cap)
        return 0;
    if (s->head > 0) {
        memmove(s->ids, s->ids + s->head, s->n * sizeof *s->ids);
        memmove(s->gens, s->gens + s->head, s->n * sizeof *s->gens);
        s->head = 0;
        if (s->n + more <= s->cap)
            return 0;
    }
    uint32_t cap = s->cap ? s->cap : 64;
    while (cap < s->n + more)
        cap *= 2;
    uint64_t *ids = realloc(s->ids, cap * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    s->ids = ids;
    uint64_t *gens = realloc(s->gens, cap * sizeof *gens);
    if (!gens)
        return -ENOMEM;
    s->gens = gens;
    s->cap = cap;
    return 0;
}

int syncer_flush(syncer *s, bool inline_sync)
{
    pthread_mutex_lock(&s->lock);
    int rc = s->result;
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        return rc;   /* invariant 2 */
    if (s->n_buffered == 0 && acceptor_pending_bytes(s->store) == 0)
        return 0;    /* what was written is in a published generation */
    rc = written_reserve(s, s->n_buffered);
    if (rc < 0)
        return rc;
    rc = acceptor_write(s->store);
    if (rc < 0)
        return rc;
    uint64_t gen = ++s->write_gen;
    for (uint32_t i = 0; i < s->n_buffered; i++) {
        s->ids[s->head + s->n] = s->buffered[i];
        s->gens[s->head + s->n] = gen;
        s->n++;
    }
    s->n_buffered = 0;
    if (!inline_sync && s->manual) {
        s->published_gen = gen;
        if (!s->running)
            manual_start(s);
        return 0;
    }
    if (!inline_sync) {
        pthread_mutex_lock(&s->lock);
        s->published_gen = gen;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    rc = acceptor_datasync(s->store);
    pthread_mutex_lock(&s->lock);
    s->syncs++;
    if (rc < 0 && !s->result)
        s->result = rc;
    if (rc == 0)
        s->published_gen = s->synced_gen = gen;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void syncer_ack_wake(syncer *s)
{
    uint64_t count;
    if (s->wake_fd < 0)
        return;
    if (read(s->wake_fd, &count, sizeof count) < 0 && errno != EAGAIN)
        fprintf(stderr, "paxosfs: reading the sync thread's eventfd: %s\n",
                strerror(errno));
}

int syncer_take(syncer *s, uint64_t *ids, uint32_t max)
{
    pthread_mutex_lock(&s->lock);
    uint64_t synced = s->synced_gen;
    int rc = s->result;
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        return rc;
    uint32_t k = 0;
    while (k < s->n && k < max && s->gens[s->head + k] <= synced) {
        ids[k] = s->ids[s->head + k];
        k++;
    }
    s->head += k;
    s->n -= k;
    if (s->n == 0)
        s->head = 0;
    return (int)k;
}

uint64_t syncer_syncs(syncer *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->syncs;
    pthread_mutex_unlock(&s->lock);
    return n;
}

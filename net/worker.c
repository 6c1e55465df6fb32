/*
 * worker.c - owns the background job thread (see worker.h).
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum worker_state { WORKER_IDLE, WORKER_QUEUED, WORKER_RUNNING, WORKER_DONE };

struct worker {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum worker_state state;
    worker_fn fn;
    void *arg;
    int result;
    bool stop;
    int wake_fd;
    /* manual mode: no thread */
    bool manual;
    worker_run_fn run_fn;
    void *started_arg;
    int started_kind;
};

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->state != WORKER_QUEUED && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->state != WORKER_QUEUED)
            break;
        w->state = WORKER_RUNNING;
        worker_fn fn = w->fn;
        void *fn_arg = w->arg;
        pthread_mutex_unlock(&w->lock);
        int rc = fn(fn_arg);
        pthread_mutex_lock(&w->lock);
        w->result = rc;
        w->state = WORKER_DONE;
        uint64_t one = 1;
        if (write(w->wake_fd, &one, sizeof one) < 0)
            fprintf(stderr, "paxosfs: worker cannot wake the loop: %s\n",
                    strerror(errno));
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int worker_create(worker **out)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) {
        int rc = -errno;
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        worker_destroy(w);
        return -EAGAIN;
    }
    w->started = true;
    *out = w;
    return 0;
}

int worker_create_manual(worker_run_fn run, void *arg, int kind,
                         worker **out)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->wake_fd = -1;
    w->manual = true;
    w->run_fn = run;
    w->started_arg = arg;
    w->started_kind = kind;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    *out = w;
    return 0;
}

void worker_complete(worker *w)
{
    if (w->manual && w->state == WORKER_RUNNING)
        w->state = WORKER_DONE;
}

void worker_destroy(worker *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    free(w);
}

int worker_wake_fd(const worker *w)
{
    return w->wake_fd;
}

bool worker_busy(worker *w)
{
    pthread_mutex_lock(&w->lock);
    bool busy = w->state != WORKER_IDLE;
    pthread_mutex_unlock(&w->lock);
    return busy;
}

int worker_submit(worker *w, worker_fn fn, void *arg)
{
    pthread_mutex_lock(&w->lock);
    if (w->state != WORKER_IDLE) {
        pthread_mutex_unlock(&w->lock);
        return -EBUSY;
    }
    if (w->manual) {
        pthread_mutex_unlock(&w->lock);
        w->state = WORKER_RUNNING;
        if (w->run_fn)
            w->run_fn(w->started_arg, w->started_kind, true);
        w->result = fn(arg);
        if (w->run_fn)
            w->run_fn(w->started_arg, w->started_kind, false);
        return 0;
    }
    w->fn = fn;
    w->arg = arg;
    w->state = WORKER_QUEUED;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

bool worker_take(worker *w, int *rc)
{
    uint64_t count;
    if (w->wake_fd >= 0 && read(w->wake_fd, &count, sizeof count) < 0 &&
        errno != EAGAIN)
        fprintf(stderr, "paxosfs: reading the worker's eventfd: %s\n",
                strerror(errno));
    pthread_mutex_lock(&w->lock);
    bool done = w->state == WORKER_DONE;
    if (done) {
        *rc = w->result;
        w->state = WORKER_IDLE;
    }
    pthread_mutex_unlock(&w->lock);
    return done;
}

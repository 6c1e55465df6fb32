/*
 * admin.c - the node's admin socket and paxosctl's side of it (admin.h).
 *
 * Invariant: a malformed or oversized request gets an "error:" reply and
 * changes nothing; the REP socket always answers, so a client never
 * wedges it.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

struct admin {
    void *rep;
    char path[4096];
    bool defer_asked;   /* the handler called admin_defer */
    bool waiting;       /* a request is answered later (admin_answer) */
    char *early;        /* answered before the handler returned */
};

void admin_defer(admin *a)
{
    a->defer_asked = true;
}

bool admin_waiting(const admin *a)
{
    return a->waiting;
}

int admin_answer(admin *a, const char *text)
{
    if (a->defer_asked && !a->early) {   /* still inside the handler */
        a->early = strdup(text);
        return a->early ? 0 : -ENOMEM;
    }
    if (!a->waiting)
        return -EALREADY;
    a->waiting = false;
    return zmq_send(a->rep, text, strlen(text), ZMQ_DONTWAIT) < 0 ? -errno : 0;
}

static int endpoint_of(const char *data_dir, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "ipc://%s/%s", data_dir, ADMIN_SOCKET_NAME);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int admin_open(void *ctx, const char *data_dir, admin **out, char *err,
               size_t err_len)
{
    admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    char endpoint[4200];
    if (endpoint_of(data_dir, endpoint, sizeof endpoint) < 0) {
        snprintf(err, err_len, "data directory path too long for the admin socket");
        free(a);
        return -ENAMETOOLONG;
    }
    snprintf(a->path, sizeof a->path, "%s/%s", data_dir, ADMIN_SOCKET_NAME);
    unlink(a->path);    /* left by a node that was killed; we hold LOCK */
    a->rep = zmq_socket(ctx, ZMQ_REP);
    int linger = 0;
    if (!a->rep || zmq_setsockopt(a->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(a->rep, endpoint) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot bind the admin socket %s: %s", endpoint,
                 zmq_strerror(e));
        if (a->rep)
            zmq_close(a->rep);
        free(a);
        return -e;
    }
    chmod(a->path, 0600);
    *out = a;
    return 0;
}

void admin_close(admin *a)
{
    if (!a)
        return;
    zmq_close(a->rep);
    unlink(a->path);
    free(a->early);
    free(a);
}

int admin_fd(admin *a)
{
    int fd = -1;
    size_t len = sizeof fd;
    if (zmq_getsockopt(a->rep, ZMQ_FD, &fd, &len) != 0)
        return -1;
    return fd;
}

bool admin_serve(admin *a, admin_handler_fn fn, void *arg)
{
    for (int i = 0; i < 64 && !a->waiting; i++) {
        char req[ADMIN_MAX_REQUEST + 1];
        int n = zmq_recv(a->rep, req, ADMIN_MAX_REQUEST, ZMQ_DONTWAIT);
        if (n < 0)
            return false;   /* drained: ZMQ_FD signals the next request */
        int more = 0;
        size_t more_len = sizeof more;
        zmq_getsockopt(a->rep, ZMQ_RCVMORE, &more, &more_len);
        while (more) {   /* a multi-part request is malformed: drain it */
            char scratch[64];
            zmq_recv(a->rep, scratch, sizeof scratch, 0);
            zmq_getsockopt(a->rep, ZMQ_RCVMORE, &more, &more_len);
            n = ADMIN_MAX_REQUEST + 1;
        }
        char *reply = NULL;
        if (n > ADMIN_MAX_REQUEST) {
            reply = strdup("error: request too long");
        } else {
            req[n] = '\0';
            req[strcspn(req, "\r\n")] = '\0';
            fn(arg, req, &reply);
        }
        if (a->defer_asked) {   /* answered later: read nothing meanwhile */
            a->defer_asked = false;
            free(reply);
            reply = a->early;   /* unless that was already */
            a->early = NULL;
            if (!reply) {
                a->waiting = true;
                return false;
            }
        }
        const char *text = reply ? reply : "error: out of memory";
        zmq_send(a->rep, text, strlen(text), 0);
        free(reply);
    }
    return !a->waiting;
}

int admin_call(const char *data_dir, const char *request, int timeout_ms,
               char **reply)
{
    char endpoint[4200];
    if (endpoint_of(data_dir, endpoint, sizeof endpoint) < 0)
        return -ENAMETOOLONG;
    char sock_path[4200];
    snprintf(sock_path, sizeof sock_path, "%s/%s", data_dir, ADMIN_SOCKET_NAME);
    struct stat st;
    if (stat(sock_path, &st) != 0)
        return -ENOENT;   /* no node is serving this directory */
    void *ctx = zmq_ctx_new();
    if (!ctx)
        return -ENOMEM;
    void *req = zmq_socket(ctx, ZMQ_REQ);
    int rc = 0;
    int linger = 0;
    if (!req) {
        rc = -ENOMEM;
        goto out;
    }
    zmq_setsockopt(req, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(req, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_connect(req, endpoint) != 0 ||
        zmq_send(req, request, strlen(request), 0) < 0) {
        rc = -errno;
        goto out;
    }
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, req, 0) < 0) {
        rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
        zmq_msg_close(&msg);
        goto out;
    }
    size_t len = zmq_msg_size(&msg);
    *reply = malloc(len + 1);
    if (!*reply) {
        rc = -ENOMEM;
    } else {
        memcpy(*reply, zmq_msg_data(&msg), len);
        (*reply)[len] = '\0';
    }
    zmq_msg_close(&msg);
out:
    if (req)
        zmq_close(req);
    zmq_ctx_term(ctx);
    return rc;
}

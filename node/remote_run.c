/*
 * remote_run.c - a client-only mount's process (see remote.h): start
 * (the first node that answers), the mount, the loop, stop; and the
 * backend calls answered outside the stream: .status (the client's state
 * and the node's, fetched every REMOTE_STATUS_MS) and the .chain texts
 * (one synchronous request each on the second connection).
 */
#include "remote_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* -------------------------------------------------- outside the stream */

static int be_status_text(void *ctx, char **text, size_t *len)
{
    remote *r = ctx;
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&buf, &size);
    if (!fp)
        return -ENOMEM;
    uint64_t now = remote_now_ms();
    fprintf(fp, "{\"client\":true,\"client_id\":\"%016" PRIx64 "\","
            "\"server\":%u,\"server_endpoint\":\"%s:%u\",\"connected\":%s,"
            "\"leader\":%u,\"applied_index\":%" PRIu64 ",\"told_index\":%"
            PRIu64 ",\"failovers\":%" PRIu64 ",\"moves_to_leader\":%" PRIu64
            ",\"stream_gaps\":%" PRIu64 ",\"rechecked_keys\":%" PRIu64
            ",\"resent_writes\":%" PRIu64
            ",\"malformed\":%" PRIu64 ",\"pending_writes\":%" PRIu64
            ",\"reads_in_flight\":%" PRIu64 ",\"last_heard_ms\":%" PRIu64
            ",\"parallel_lookups\":%s,\"server_status\":%s}\n",
            r->client_id, r->server_id, r->servers[r->cur].host,
            r->servers[r->cur].port, r->subscribed ? "true" : "false",
            r->leader_id, r->seen, r->told, r->failovers, r->moves, r->gaps,
            r->rechecks, r->resent, r->malformed, r->n_writes, r->n_reads,
            now - r->last_msg_ms,
            fs_parallel_dirops(r->mount) ? "true" : "false",
            r->server_status && r->server_status[0] == '{' ? r->server_status
                                                           : "null");
    if (fclose(fp) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *text = buf;
    *len = size;
    return 0;
}

/* A text the node renders, asked on the second connection and waited for
 * (at most REMOTE_SYNC_MS; the mount's other requests wait meanwhile:
 * docs/design.md "Client-only mounts"). */
static int sync_text(remote *r, uint8_t op, uint64_t arg, char **text,
                     size_t *len)
{
    wire_mount_req q = { .op = op, .rid = READ_RID_BIT | r->next_rid++,
                         .arg = arg };
    int rc = remote_send_on(r, r->sync_sock, &q);
    if (rc < 0)
        return rc;
    uint64_t deadline = remote_now_ms() + REMOTE_SYNC_MS;
    for (;;) {
        uint64_t now = remote_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        zmq_pollitem_t it = { .socket = r->sync_sock, .events = ZMQ_POLLIN };
        if (zmq_poll(&it, 1, (long)(deadline - now)) <= 0)
            continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, r->sync_sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        wire_mount_msg m;
        rc = wire_decode_mount_msg(zmq_msg_data(&msg), zmq_msg_size(&msg), &m);
        if (rc < 0 || m.op != WIRE_MOUNT_TEXT || m.rid != q.rid) {
            zmq_msg_close(&msg);
            continue;   /* an answer to an earlier call that timed out */
        }
        rc = m.result;
        if (rc == 0) {
            *text = malloc((size_t)m.len + 1);
            if (!*text) {
                rc = -ENOMEM;
            } else {
                memcpy(*text, m.bytes, m.len);
                (*text)[m.len] = '\0';
                *len = m.len;
            }
        }
        zmq_msg_close(&msg);
        return rc;
    }
}

static int be_block_text(void *ctx, uint64_t index, char **text, uint32_t *len)
{
    size_t l = 0;
    int rc = sync_text(ctx, WIRE_MOUNT_BLOCK, index, text, &l);
    if (rc == 0)
        *len = (uint32_t)l;
    return rc;
}

static int be_snapshot_text(void *ctx, char **text, size_t *len)
{
    return sync_text(ctx, WIRE_MOUNT_SNAPSHOT, 0, text, len);
}

static int be_members_text(void *ctx, char **text, size_t *len)
{
    return sync_text(ctx, WIRE_MOUNT_MEMBERS, 0, text, len);
}

/* ---------------------------------------------------------------- run */

static int wait_beat(remote *r, uint64_t until)
{
    while (!r->subscribed) {
        uint64_t now = remote_now_ms();
        if (now >= until)
            return -ETIMEDOUT;
        zmq_pollitem_t it = { .socket = r->sock, .events = ZMQ_POLLIN };
        long t = (long)(until - now);
        zmq_poll(&it, 1, t < 50 ? t : 50);
        remote_receive(r, remote_now_ms());
    }
    return 0;
}

int remote_open(const remote_config *cfg, uint64_t wait_ms, remote **out,
                char *err, size_t err_len)
{
    if (!cfg->n_servers || cfg->n_servers > TRANSPORT_MAX_PEERS) {
        snprintf(err, err_len, "a client needs 1 to %d nodes in --peers",
                 TRANSPORT_MAX_PEERS);
        return -EINVAL;
    }
    remote *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    r->cfg = *cfg;
    r->signal_fd = -1;
    memcpy(r->servers, cfg->servers, cfg->n_servers * sizeof *cfg->servers);
    r->cfg.servers = r->servers;
    if (cfg->key) {
        r->key = *cfg->key;
        r->keyed = true;
        r->cfg.key = &r->key;
    }
    r->mountpoint = strdup(cfg->mountpoint);
    r->cfg.mountpoint = r->mountpoint;
    while (r->client_id == 0)
        if (getrandom(&r->client_id, sizeof r->client_id, 0) !=
            sizeof r->client_id)
            r->client_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    r->next_seq = 1;
    r->next_rid = 1;
    r->zctx = zmq_ctx_new();
    if (!r->mountpoint || !r->zctx) {
        snprintf(err, err_len, "out of memory");
        remote_close(r);
        return -ENOMEM;
    }
    uint64_t until = remote_now_ms() + wait_ms;
    for (uint32_t i = 0;; i = (i + 1) % cfg->n_servers) {
        uint64_t now = remote_now_ms();
        if (remote_use_server(r, i, now) < 0) {
            snprintf(err, err_len, "cannot create a socket");
            remote_close(r);
            return -ENOMEM;
        }
        uint64_t try_until = now + REMOTE_SILENT_MS;
        if (wait_beat(r, try_until < until ? try_until : until) == 0)
            break;
        if (remote_now_ms() >= until) {
            snprintf(err, err_len, "no node answered on its client port "
                     "within %" PRIu64 " ms", wait_ms);
            remote_close(r);
            return -EHOSTUNREACH;
        }
    }
    *out = r;
    return 0;
}

static int open_signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int remote_mount(remote *r, char *err, size_t err_len)
{
    r->signal_fd = open_signal_fd();
    if (r->signal_fd < 0) {
        snprintf(err, err_len, "signalfd: %s", strerror(-r->signal_fd));
        return r->signal_fd;
    }
    fs_backend be;
    remote_backend(r, &be);
    be.status_text = be_status_text;
    be.block_text = be_block_text;
    be.snapshot_text = be_snapshot_text;
    be.members_text = be_members_text;
    fs_options opt = {
        .attr_timeout_s = r->cfg.attr_timeout_s,
        .entry_timeout_s = r->cfg.entry_timeout_s,
        .debug = r->cfg.fuse_debug,
        .allow_other = r->cfg.allow_other,
    };
    return fs_mount(&opt, &be, r->mountpoint, &r->mount, err, err_len);
}

static bool zmq_readable(void *sock)
{
    int ev = 0;
    size_t sz = sizeof ev;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) == 0 &&
           (ev & ZMQ_POLLIN);
}

int remote_run(remote *r)
{
    uint64_t drain_until = 0;
    for (;;) {
        uint64_t now = remote_now_ms();
        if (r->stop) {
            /* writes made at close: give them the commit timeout */
            bool answered = false;
            for (wr *w = r->w_head; w; w = w->next)
                answered |= w->answered;
            if (!answered)
                break;
            if (!drain_until) {
                drain_until = now + r->cfg.commit_timeout_ms;
                fprintf(stderr, "paxosfs: client: waiting for writes made at "
                        "close to commit\n");
            }
            if (now >= drain_until) {
                fprintf(stderr, "paxosfs: client: stopping with writes made "
                        "at close not known to be committed\n");
                break;
            }
        }
        int zfd = -1;
        size_t sz = sizeof zfd;
        zmq_getsockopt(r->sock, ZMQ_FD, &zfd, &sz);
        struct pollfd fds[3] = {
            { .fd = r->signal_fd, .events = POLLIN },
            { .fd = zfd, .events = POLLIN },
            { .fd = r->mount && !r->stop ? fs_fd(r->mount) : -1,
              .events = POLLIN },
        };
        int timeout = zmq_readable(r->sock) ? 0 : 20;
        if (r->mount) {
            /* fs/reply.c invariant 2: nothing waits with answers queued;
             * stopping, no more requests are read */
            uint32_t dispatched = 0;
            int rc = fs_send_answers(r->mount, !r->stop, &dispatched);
            if (rc != 0) {
                if (rc < 0)
                    fprintf(stderr, "paxosfs: FUSE: %s\n", strerror(-rc));
                r->stop = true;
            }
            if (dispatched)
                timeout = 0;
        }
        int pr = poll(fds, 3, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(r->signal_fd, &si, sizeof si) > 0) {
                fprintf(stderr, "paxosfs: client: signal %u, stopping\n",
                        si.ssi_signo);
                if (r->stop)
                    drain_until = 1;
                r->stop = true;
            }
        }
        remote_receive(r, remote_now_ms());
        if (pr > 0 && fds[2].fd >= 0 &&
            (fds[2].revents & (POLLIN | POLLERR | POLLHUP))) {
            int rc = fs_process(r->mount);
            if (rc != 0) {
                if (rc < 0)
                    fprintf(stderr, "paxosfs: FUSE: %s\n", strerror(-rc));
                else
                    fprintf(stderr, "paxosfs: client: unmounted, stopping\n");
                r->stop = true;
            }
        }
        remote_timers(r, remote_now_ms());
    }
    return 0;
}

void remote_close(remote *r)
{
    if (!r)
        return;
    /* what still waits: answered into the void, nothing leaks */
    while (r->r_head)
        remote_fail_read(r, r->r_head, -EIO);
    while (r->w_head) {
        wr *w = r->w_head;
        remote_write_unlink(r, w);
        w->done(w->arg, -EIO);
        free(w->op);
        free(w);
    }
    if (r->mount)
        fs_unmount(r->mount);
    if (r->sock)
        zmq_close(r->sock);
    if (r->sync_sock)
        zmq_close(r->sync_sock);
    if (r->zctx)
        zmq_ctx_term(r->zctx);
    if (r->signal_fd >= 0)
        close(r->signal_fd);
    free(r->server_status);
    free(r->buf);
    free(r->mountpoint);
    free(r);
}

/*
 * open.c - a node's life outside the loop: the backing directory and its
 * lock, restart from what is on disk (acceptor store, chain, key-value
 * state), the replica, the network, the mount, and the orderly close.
 */
#include "node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "../net/cpus.h"
#include "serve.h"

void node_config_default(node_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = 1;
    cfg->commit_timeout_ms = 10000;
    cfg->max_writes_in_flight = CLIENT_MAX_PENDING;
    /* 0: the kernel asks the mount every time, so every stat and lookup
     * is linearizable (docs/design.md, "Reads") */
    cfg->attr_timeout_s = 0.0;
    cfg->entry_timeout_s = 0.0;
    cfg->chain_sync_interval_ms = 200;
    cfg->snapshot_entries = NODE_SNAPSHOT_ENTRIES;
    cfg->snapshot_bytes = NODE_SNAPSHOT_BYTES;
    cfg->verify_interval_ms = NODE_VERIFY_INTERVAL_MS;
    cfg->promote_lag = NODE_PROMOTE_LAG;
    cfg->busy_poll_us = NODE_BUSY_POLL_US;
}

/* -------------------------------------------------------- open/close */

/* The backing directory holds every value: 0700 whoever made it (an
 * existing one that others may enter is tightened, if it is ours). */
static int make_dir(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, err_len, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if ((st.st_mode & 077) && st.st_uid == geteuid() &&
        chmod(path, st.st_mode & 0700) != 0) {
        int e = errno;
        snprintf(err, err_len, "cannot make %s private (chmod 0700): %s",
                 path, strerror(e));
        return -e;
    }
    return 0;
}

int node_take_lock(node *n, char *err, size_t err_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", n->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char owner[32] = "";
        ssize_t r = pread(fd, owner, sizeof owner - 1, 0);
        owner[r > 0 ? r : 0] = '\0';
        owner[strcspn(owner, "\n")] = '\0';
        snprintf(err, err_len, "%s is in use by another paxosfs node%s%s",
                 n->data_dir, owner[0] ? " (pid " : "", owner[0] ? owner : "");
        if (owner[0])
            strncat(err, ")", err_len - strlen(err) - 1);
        close(fd);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    n->lock_fd = fd;
    return 0;
}

/* Record the pid of the process that holds the lock (after daemonizing). */
void node_write_lock_pid(node *n)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(n->lock_fd, 0) == 0 && pwrite(n->lock_fd, buf, (size_t)len, 0) < 0)
        fprintf(stderr, "paxosfs: cannot record pid in LOCK: %s\n", strerror(errno));
}

/* Record this start (integrity.c invariant 5): one more than the store
 * knows of, a fresh nonce; the latest start of each peer seen (at open
 * and again after reopen.c reopened the stores). */
int node_record_start(node *n, char *err, size_t err_len)
{
    acceptor_info info;
    acceptor_get_info(n->acceptor, &info);
    n->prev_start = (acceptor_peer){ .counter = info.incarnation,
                                     .nonce = info.nonce };
    n->start = (acceptor_peer){ .counter = info.incarnation + 1,
                                .nonce = node_random_u64() };
    for (uint32_t k = 0; k < n->cfg.n_peers; k++)
        for (uint32_t i = 0; i < info.n_peers; i++)
            if (info.peers[i].id == n->cfg.peers[k].id)
                n->peer_start[k] = info.peers[i];
    int rc = acceptor_put_incarnation(n->acceptor, n->start.counter,
                                      n->start.nonce);
    if (rc == 0)
        rc = acceptor_sync(n->acceptor);
    if (rc < 0)
        snprintf(err, err_len, "cannot write the acceptor store in %s: %s",
                 n->data_dir, strerror(-rc));
    return rc;
}

int node_open(const node_config *cfg, node **out, char *err, size_t err_len)
{
    node *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    n->cfg = *cfg;
    n->lock_fd = -1;
    n->signal_fd = -1;
    n->data_dir = strdup(cfg->data_dir);
    n->mountpoint = cfg->mountpoint ? strdup(cfg->mountpoint) : NULL;
    int rc = client_create(node_random_u64(), cfg->commit_timeout_ms,
                           cfg->max_writes_in_flight, &n->cl);
    if (rc == -EINVAL) {
        snprintf(err, err_len, "writes in flight must be a power of two "
                 "from 1 to %d, not %" PRIu32, CLIENT_MAX_PENDING,
                 cfg->max_writes_in_flight);
        goto fail;
    }
    if (rc == 0)
        rc = -ENOMEM;
    if (!n->data_dir || (cfg->mountpoint && !n->mountpoint) || !n->cl) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    n->cfg.data_dir = n->data_dir;
    n->cfg.mountpoint = n->mountpoint;
    if (cfg->n_peers > TRANSPORT_MAX_PEERS) {
        rc = -EINVAL;
        snprintf(err, err_len, "at most %d members", TRANSPORT_MAX_PEERS);
        goto fail;
    }
    if (cfg->n_peers)
        memcpy(n->peers, cfg->peers, cfg->n_peers * sizeof *cfg->peers);
    n->cfg.peers = n->peers;
    if (cfg->key) {
        n->key = *cfg->key;
        n->cfg.key = &n->key;
    }
    n->placed_as = -1;
    if (cfg->leader_cpus) {
        n->leader_cpus = *cfg->leader_cpus;
        n->cfg.leader_cpus = &n->leader_cpus;
        /* followers keep off the leader's CPUs, unless that leaves none */
        if (cpus_allowed(&n->other_cpus) == 0) {
            cpu_set_t rest;
            CPU_XOR(&rest, &n->other_cpus, &n->leader_cpus);
            CPU_AND(&rest, &rest, &n->other_cpus);
            if (CPU_COUNT(&rest) > 0)
                n->other_cpus = rest;
        }
    }

    rc = make_dir(n->data_dir, err, err_len);
    if (rc < 0)
        goto fail;
    rc = node_take_lock(n, err, err_len);
    if (rc < 0)
        goto fail;
    rc = health_init(&n->health, cfg->id, n->data_dir, NULL, NULL, NULL);
    if (rc < 0) {
        snprintf(err, err_len, "cannot start the health thread: %s",
                 strerror(-rc));
        goto fail;
    }

    /* the stores, the key-value state and the replica (host.c) */
    px_options opt;
    px_options_default(&opt, cfg->id);
    if (cfg->n_peers == 0) {
        opt.members.voters[0] = cfg->id;
        opt.members.n_voters = 1;
    } else {
        /* joining: the others are the voters, this node none of them (it
         * learns the configuration in force from the cluster) */
        for (uint32_t i = 0; i < cfg->n_peers; i++)
            if (!cfg->join || cfg->peers[i].id != cfg->id)
                opt.members.voters[opt.members.n_voters++] = cfg->peers[i].id;
        if (opt.members.n_voters == 0) {
            rc = -EINVAL;
            snprintf(err, err_len, "--join needs --peers naming the members");
            goto fail;
        }
    }
    opt.seed = node_random_u64();
    opt.follower_leases = !cfg->no_follower_leases;
    host_config hc = {
        .id = cfg->id,
        .data_dir = n->data_dir,
        .px = opt,
        .chain_sync_interval_ms = cfg->chain_sync_interval_ms,
        .chain_segment_bytes = cfg->chain_segment_bytes,
    };
    host_edges edges;
    node_host_edges(n, &edges);
    char why[HOST_WHY_BYTES];
    chain_damage damage;
    memset(&damage, 0, sizeof damage);
    hc.damage_out = &damage;
    rc = host_open(&hc, &edges, &n->host, why, err, err_len);
    if (rc == -EBADMSG && repair_at_start(n, &damage, err) == 0) {
        /* the damaged segments and the acceptor log went aside: open
         * what is left, recover, and learn the rest from the peers */
        hc.damage_out = NULL;
        rc = host_open(&hc, &edges, &n->host, why, err, err_len);
    }
    if (rc < 0)
        goto fail;
    n->chain = host_chain(n->host);
    n->acceptor = host_acceptor(n->host);
    n->state = host_state(n->host);
    n->px = host_replica(n->host);
    if (why[0])
        integrity_begin_recovery(n, why);
    repair_after_reopen(n);   /* a repair begun at start (repair_at_start) */
    members_init(n, &opt.members);   /* the configuration in force */
    rc = node_record_start(n, err, err_len);
    if (rc < 0)
        goto fail;

    n->zctx = zmq_ctx_new();
    if (!n->zctx) {
        rc = -ENOMEM;
        snprintf(err, err_len, "cannot create the ZeroMQ context");
        goto fail;
    }
    if (n->cfg.n_peers > 0) {
        rc = transport_open(n->zctx, cfg->id, n->cfg.peers, n->cfg.n_peers,
                            n->cfg.key, &n->net, err, err_len);
        if (rc < 0)
            goto fail;
        members_start(n);
    }
    rc = admin_open(n->zctx, n->data_dir, &n->adm, err, err_len);
    if (rc < 0)
        goto fail;
    if (cfg->client_port) {
        const char *where = "127.0.0.1";
        for (uint32_t i = 0; i < cfg->n_peers; i++)
            if (cfg->peers[i].id == cfg->id)
                where = cfg->peers[i].host;
        rc = serve_open(n, n->zctx, where, cfg->client_port, n->cfg.key,
                        cfg->client_ring, &n->serve, err, err_len);
        if (rc < 0)
            goto fail;
    }
    rc = snapnode_start(n, err, err_len);
    if (rc < 0)
        goto fail;
    uint64_t head = chain_head_index(n->chain);
    /* a node just started has had no chance to find its leader yet */
    n->leader_seen_ms = node_now_ms();
    n->no_leader_ms = NODE_NO_LEADER_FACTOR * opt.election_timeout_max_ms;
    n->start_head = head;
    n->started_ms = n->last_wait_log_ms = node_now_ms();
    integrity_gate_update(n);   /* a cluster of one is confirmed at once */
    *out = n;
    return 0;

fail:
    node_close(n);
    return rc < 0 ? rc : -EIO;
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

int node_mount(node *n, char *err, size_t err_len)
{
    /* block the stop signals before the mount starts its threads, so they
     * reach the loop's signalfd and no thread dies of them */
    n->signal_fd = open_signal_fd();
    if (n->signal_fd < 0) {
        snprintf(err, err_len, "signalfd: %s", strerror(-n->signal_fd));
        return n->signal_fd;
    }
    fs_backend be;
    node_backend(n, &be);
    fs_options opt = {
        .attr_timeout_s = n->cfg.attr_timeout_s,
        .entry_timeout_s = n->cfg.entry_timeout_s,
        .debug = n->cfg.fuse_debug,
        .allow_other = n->cfg.allow_other,
    };
    return fs_mount(&opt, &be, n->mountpoint, &n->mount, err, err_len);
}

void node_close(node *n)
{
    if (!n)
        return;
    if (n->mount) {
        /* parked requests of a mount that is going away: answer (into the
         * void) so that nothing they hold leaks */
        client_fail_all(n->cl, -EIO);
        fs_unmount(n->mount);
        n->mount = NULL;
    }
    if (n->serve) {
        /* reads of clients in flight answer (into the void) first */
        client_fail_all(n->cl, -EIO);
        serve_close(n->serve);
        n->serve = NULL;
    }
    health_fini(&n->health);
    if (n->adm)
        admin_close(n->adm);
    if (n->net)
        transport_close(n->net);
    if (n->zctx)
        zmq_ctx_term(n->zctx);
    snapnode_stop(n);   /* before the host: a snapshot being written */
    free(n->held_catchup);
    /* makes the chain durable and records its position (a clean stop) */
    host_close(n->host, !n->fatal);
    if (n->signal_fd >= 0)
        close(n->signal_fd);
    if (n->lock_fd >= 0)
        close(n->lock_fd);
    client_destroy(n->cl);
    free(n->data_dir);
    free(n->mountpoint);
    free(n);
}

/*
 * paxosfs - a paxosfs node with its FUSE mount.
 *
 *   paxosfs --id N --data DIR [options] MOUNTPOINT
 *
 * Without -f the command returns once the mount is ready and the node keeps
 * serving in the background: the child does all the work (open, verify,
 * mount) while its stderr is still the caller's terminal, reports success
 * or failure through a pipe, and only then redirects its output to the
 * log file.  `fusermount3 -u MOUNTPOINT` or SIGTERM stops it cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../net/cpus.h"
#include "../net/keys.h"
#include "../node/client.h"
#include "../node/node.h"
#include "../node/remote.h"
#include "../net/transport.h"

/* Raise the soft limit of open descriptors to the hard limit: every peer
 * connection, every open file of the mount and the chain segments take
 * one, and a node that runs out refuses connections or fails writes.
 * Writes what was found and set into msg, for the log. */
static void raise_nofile(char *msg, size_t len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(msg, len, "cannot read RLIMIT_NOFILE: %s", strerror(errno));
        return;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            snprintf(msg, len, "open files: soft limit %llu, hard %llu; "
                     "cannot raise the soft limit: %s",
                     (unsigned long long)was, (unsigned long long)rl.rlim_max,
                     strerror(errno));
            return;
        }
    }
    snprintf(msg, len, "open files: soft limit %llu (was %llu), hard %llu",
             (unsigned long long)rl.rlim_cur, (unsigned long long)was,
             (unsigned long long)rl.rlim_max);
}

static void usage(FILE *fp)
{
    fprintf(fp,
"usage: paxosfs --id N --data DIR [options] MOUNTPOINT\n"
"       paxosfs --client --peers LIST [--key FILE] [--log FILE] MOUNTPOINT\n"
"\n"
"Run paxosfs node N with its backing directory DIR and mount the store at\n"
"MOUNTPOINT.  Returns once the mount is ready; the node keeps serving in the\n"
"background until `fusermount3 -u MOUNTPOINT` or SIGTERM.\n"
"\n"
"options:\n"
"  --id N                 node id, a positive integer (default 1)\n"
"  --data DIR             backing directory: hash chain, acceptor state,\n"
"                         LOCK and log (created if absent); required\n"
"  --peers LIST           every member of the cluster, this node included,\n"
"                         as ID=HOST:PORT,ID=HOST:PORT,...; this node\n"
"                         listens on its own entry; without --peers the\n"
"                         node is a cluster of one\n"
"  --join                 join a running cluster with an empty DIR: --peers\n"
"                         names the members (and this node); it starts as\n"
"                         a non-voter, learns the configuration and the\n"
"                         state from them; add it with `paxosctl member add`\n"
"  --promote-lag N        as leader, promote a learner to voter once it\n"
"                         lags at most N slots (default 64)\n"
"  --no-promote           as leader, never promote a learner by itself\n"
"                         (`paxosctl member promote` does)\n"
"  --key FILE             cluster key (paxosctl keygen FILE): peers must\n"
"                         hold the same key; without it traffic is neither\n"
"                         authenticated nor encrypted\n"
"  --client-port PORT     also serve client-only mounts on PORT (this\n"
"                         node's host in --peers)\n"
"  --client-ring N        changed keys kept for clients that resume on this\n"
"                         node after leaving another (default 65536)\n"
"  --client               a client-only mount: no backing directory, no\n"
"                         vote; --peers lists the nodes' client ports\n"
"                         (ID=HOST:CLIENTPORT,...); writes and reads go\n"
"                         to one of them (the leader when known), and to\n"
"                         the next when it fails; --log is required\n"
"                         without -f\n"
"  -f, --foreground       stay in the foreground, log to stderr\n"
"  -d, --debug            print every FUSE request (implies -f)\n"
"  --log FILE             log file when in the background\n"
"                         (default DIR/paxosfs.log)\n"
"  --commit-timeout-ms N  a write not committed within N ms fails with\n"
"                         ETIMEDOUT (default 10000)\n"
"  --max-writes-in-flight N  writes this mount proposes at once, a power\n"
"                         of two from 1 to 1024 (default 1024); further\n"
"                         writers wait their turn, none fails for it\n"
"  --attr-timeout S       kernel attribute cache seconds (default 0: every\n"
"                         stat is linearizable; above 0 a stat may miss\n"
"                         another mount's change until this node applies\n"
"                         it, and read-only opens use the page cache)\n"
"  --entry-timeout S      kernel name cache seconds (default 0: every\n"
"                         lookup is linearizable; above 0 a name may show\n"
"                         another mount's change until this node applies\n"
"                         it: every change is invalidated then)\n"
"  --snapshot-entries N   take a snapshot of the state once N entries were\n"
"                         applied since the last (default 100000; 0: not\n"
"                         by count)\n"
"  --snapshot-bytes N     ... or once N bytes of entries were (default\n"
"                         1073741824; 0: not by size)\n"
"  --no-compact           keep every chain segment after a snapshot\n"
"  --no-follower-leases   this node asks for no follower lease and, while\n"
"                         it leads, grants none: every read on a follower\n"
"                         asks the leader, and a write commits once a\n"
"                         majority has it (default: a follower serving\n"
"                         reads holds a lease and reads locally; writes\n"
"                         then also wait for it, or for its lease to end)\n"
"  --verify-interval MS   check the chain segments, snapshots and acceptor\n"
"                         store on disk every MS milliseconds while running,\n"
"                         repairing damage from the peers (default 60000;\n"
"                         0: off)\n"
"  --busy-poll-us N       before the loop sleeps, poll this long without\n"
"                         sleeping while the mount has writes in flight\n"
"                         or just had a request (default 50; 0: never;\n"
"                         waking a sleeping thread costs tens of us on a\n"
"                         virtual machine)\n"
"  --chain-segment-bytes N  start a new chain segment past N bytes\n"
"                         (default 64 MiB; compaction removes whole\n"
"                         segments)\n"
"  --allow-other          let other users access the mount\n"
"  --leader-cpus LIST     while this node leads, run all its threads on\n"
"                         these CPUs only (\"0\", \"0-1,4\"); while it does\n"
"                         not, keep them off these CPUs.  For several nodes\n"
"                         on one machine (tools/cluster up --pin): the\n"
"                         leader gets a CPU of its own.  Default: no pinning\n"
"  -h, --help             this help\n"
"\n"
"Values are at most 4 MiB (larger writes fail with EFBIG); names at most\n"
"255 bytes (ENAMETOOLONG).  See README.md.\n");
}

static char *absolute(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    size_t len = strlen(cwd) + 1 + strlen(path) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s/%s", cwd, path);
    return out;
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end || s[0] == '-' || s[0] == '\0')
        return -1;
    *out = v;
    return 0;
}

/* Detach: the parent returns once the child reports (through the pipe)
 * whether its mount is ready.  Returns -1 in the child, else the
 * parent's exit code. */
static int detach(int ready_pipe[2])
{
    if (pipe(ready_pipe) != 0) {
        perror("paxosfs: pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("paxosfs: fork");
        return 1;
    }
    if (pid > 0) {
        close(ready_pipe[1]);
        char status = 1;
        ssize_t r;
        do
            r = read(ready_pipe[0], &status, 1);
        while (r < 0 && errno == EINTR);
        return r == 1 ? status : 1;
    }
    close(ready_pipe[0]);
    setsid();
    return -1;
}

/* The child is ready: its output goes to the log, the parent returns. */
static void detached_ready(int ready_fd, const char *log_file)
{
    int fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (chdir("/") != 0)
        perror("paxosfs: chdir");
    char status = 0;
    if (write(ready_fd, &status, 1) < 0)
        perror("paxosfs: write");
    close(ready_fd);
}

/* paxosfs --client: a client-only mount (node/remote.h). */
static int client_main(int argc, char **argv, const node_config *cfg,
                       const char *peers_spec, const char *key_path,
                       const char *log_path, bool foreground)
{
    static net_peer_addr servers[TRANSPORT_MAX_PEERS];
    static keys key;
    char perr[256] = "";
    uint32_t n_servers = 0;
    if (!peers_spec || optind != argc - 1 || (!foreground && !log_path)) {
        fprintf(stderr, "paxosfs: --client needs --peers, exactly one "
                "MOUNTPOINT, and --log FILE unless -f\n");
        return 2;
    }
    if (net_parse_peers(peers_spec, servers, TRANSPORT_MAX_PEERS, &n_servers,
                        perr, sizeof perr) < 0) {
        fprintf(stderr, "paxosfs: --peers: %s\n", perr);
        return 2;
    }
    if (key_path) {
        if (keys_load(key_path, &key, perr, sizeof perr) < 0) {
            fprintf(stderr, "paxosfs: --key %s: %s\n", key_path, perr);
            return 2;
        }
        if (perr[0])
            fprintf(stderr, "paxosfs: %s\n", perr);
    }
    char *mountpoint = realpath(argv[optind], NULL);
    struct stat st;
    if (!mountpoint || stat(mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "paxosfs: mount point %s is not an existing directory\n",
                argv[optind]);
        free(mountpoint);
        return 2;
    }
    char *log_file = log_path ? absolute(log_path) : NULL;
    int ready_pipe[2] = { -1, -1 };
    int exit_code = 1;
    if (!foreground) {
        exit_code = detach(ready_pipe);
        if (exit_code >= 0)
            goto out;
        exit_code = 1;
    }
    remote_config rc_cfg = {
        .servers = servers, .n_servers = n_servers,
        .key = key_path ? &key : NULL, .mountpoint = mountpoint,
        .commit_timeout_ms = cfg->commit_timeout_ms,
        .attr_timeout_s = cfg->attr_timeout_s,
        .entry_timeout_s = cfg->entry_timeout_s,
        .fuse_debug = cfg->fuse_debug, .allow_other = cfg->allow_other,
    };
    char err[1024] = "";
    remote *r = NULL;
    int rc = remote_open(&rc_cfg, 10000, &r, err, sizeof err);
    if (rc == 0)
        rc = remote_mount(r, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: client: %s\n", err);
        remote_close(r);
        if (!foreground) {
            char status = 1;
            if (write(ready_pipe[1], &status, 1) < 0)
                perror("paxosfs: write");
        }
        goto out;
    }
    fprintf(stderr, "paxosfs: client mount %s ready\n", mountpoint);
    if (!foreground)
        detached_ready(ready_pipe[1], log_file);
    remote_run(r);
    remote_close(r);
    fprintf(stderr, "paxosfs: client stopped\n");
    exit_code = 0;
out:
    free(mountpoint);
    free(log_file);
    return exit_code;
}

int main(int argc, char **argv)
{
    node_config cfg;
    node_config_default(&cfg);
    const char *data = NULL, *log_path = NULL;
    bool foreground = false;
    const char *peers_spec = NULL, *key_path = NULL;
    bool client_mode = false;
    cpu_set_t leader_cpus;
    enum { OPT_ID = 256, OPT_DATA, OPT_LOG, OPT_COMMIT_TIMEOUT, OPT_ATTR,
           OPT_ALLOW_OTHER, OPT_PEERS, OPT_KEY, OPT_LEADER_CPUS, OPT_ENTRY,
           OPT_MAX_WRITES, OPT_SNAP_ENTRIES, OPT_SNAP_BYTES, OPT_NO_COMPACT,
           OPT_SEGMENT_BYTES, OPT_VERIFY_INTERVAL, OPT_CLIENT, OPT_CLIENT_PORT,
           OPT_CLIENT_RING, OPT_JOIN, OPT_PROMOTE_LAG, OPT_NO_PROMOTE,
           OPT_NO_FOLLOWER_LEASES, OPT_BUSY_POLL };
    static const struct option longopts[] = {
        { "id", required_argument, NULL, OPT_ID },
        { "data", required_argument, NULL, OPT_DATA },
        { "log", required_argument, NULL, OPT_LOG },
        { "commit-timeout-ms", required_argument, NULL, OPT_COMMIT_TIMEOUT },
        { "max-writes-in-flight", required_argument, NULL, OPT_MAX_WRITES },
        { "attr-timeout", required_argument, NULL, OPT_ATTR },
        { "entry-timeout", required_argument, NULL, OPT_ENTRY },
        { "allow-other", no_argument, NULL, OPT_ALLOW_OTHER },
        { "snapshot-entries", required_argument, NULL, OPT_SNAP_ENTRIES },
        { "snapshot-bytes", required_argument, NULL, OPT_SNAP_BYTES },
        { "no-compact", no_argument, NULL, OPT_NO_COMPACT },
        { "no-follower-leases", no_argument, NULL, OPT_NO_FOLLOWER_LEASES },
        { "chain-segment-bytes", required_argument, NULL, OPT_SEGMENT_BYTES },
        { "verify-interval", required_argument, NULL, OPT_VERIFY_INTERVAL },
        { "busy-poll-us", required_argument, NULL, OPT_BUSY_POLL },
        { "peers", required_argument, NULL, OPT_PEERS },
        { "client", no_argument, NULL, OPT_CLIENT },
        { "client-port", required_argument, NULL, OPT_CLIENT_PORT },
        { "client-ring", required_argument, NULL, OPT_CLIENT_RING },
        { "join", no_argument, NULL, OPT_JOIN },
        { "promote-lag", required_argument, NULL, OPT_PROMOTE_LAG },
        { "no-promote", no_argument, NULL, OPT_NO_PROMOTE },
        { "key", required_argument, NULL, OPT_KEY },
        { "leader-cpus", required_argument, NULL, OPT_LEADER_CPUS },
        { "foreground", no_argument, NULL, 'f' },
        { "debug", no_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "fdh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_ID:
            if (parse_u64(optarg, &v) || v == 0 || v > 0xffffffffull) {
                fprintf(stderr, "paxosfs: --id needs a positive integer, got '%s'\n", optarg);
                return 2;
            }
            cfg.id = (uint32_t)v;
            break;
        case OPT_DATA: data = optarg; break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_COMMIT_TIMEOUT:
            if (parse_u64(optarg, &v) || v == 0) {
                fprintf(stderr, "paxosfs: --commit-timeout-ms needs a positive integer\n");
                return 2;
            }
            cfg.commit_timeout_ms = v;
            break;
        case OPT_MAX_WRITES:
            if (parse_u64(optarg, &v) || v == 0 || v > CLIENT_MAX_PENDING ||
                (v & (v - 1))) {
                fprintf(stderr, "paxosfs: --max-writes-in-flight needs a power "
                        "of two from 1 to %d, got '%s'\n", CLIENT_MAX_PENDING,
                        optarg);
                return 2;
            }
            cfg.max_writes_in_flight = (uint32_t)v;
            break;
        case OPT_ATTR:
        case OPT_ENTRY: {
            char *end = NULL;
            double d = strtod(optarg, &end);
            if (!end || end == optarg || *end || !(d >= 0 && d <= 3600)) {
                fprintf(stderr, "paxosfs: --%s needs seconds in [0, 3600]\n",
                        c == OPT_ATTR ? "attr-timeout" : "entry-timeout");
                return 2;
            }
            if (c == OPT_ATTR)
                cfg.attr_timeout_s = d;
            else
                cfg.entry_timeout_s = d;
            break;
        }
        case OPT_ALLOW_OTHER: cfg.allow_other = true; break;
        case OPT_SNAP_ENTRIES:
        case OPT_SNAP_BYTES:
            if (parse_u64(optarg, &v)) {
                fprintf(stderr, "paxosfs: --%s needs a non-negative integer, "
                        "got '%s'\n", c == OPT_SNAP_ENTRIES ?
                        "snapshot-entries" : "snapshot-bytes", optarg);
                return 2;
            }
            if (c == OPT_SNAP_ENTRIES)
                cfg.snapshot_entries = v;
            else
                cfg.snapshot_bytes = v;
            break;
        case OPT_NO_COMPACT: cfg.no_compact = true; break;
        case OPT_NO_FOLLOWER_LEASES: cfg.no_follower_leases = true; break;
        case OPT_SEGMENT_BYTES:
            if (parse_u64(optarg, &v) || v == 0) {
                fprintf(stderr, "paxosfs: --chain-segment-bytes needs a "
                        "positive integer, got '%s'\n", optarg);
                return 2;
            }
            cfg.chain_segment_bytes = v;
            break;
        case OPT_VERIFY_INTERVAL:
            if (parse_u64(optarg, &v)) {
                fprintf(stderr, "paxosfs: --verify-interval needs "
                        "milliseconds (0: off), got '%s'\n", optarg);
                return 2;
            }
            cfg.verify_interval_ms = v;
            break;
        case OPT_BUSY_POLL:
            if (parse_u64(optarg, &v) || v > 10000) {
                fprintf(stderr, "paxosfs: --busy-poll-us needs microseconds "
                        "from 0 (off) to 10000, got '%s'\n", optarg);
                return 2;
            }
            cfg.busy_poll_us = (uint32_t)v;
            break;
        case OPT_PEERS: peers_spec = optarg; break;
        case OPT_CLIENT: client_mode = true; break;
        case OPT_CLIENT_PORT:
            if (parse_u64(optarg, &v) || v == 0 || v > 65535) {
                fprintf(stderr, "paxosfs: --client-port needs a port number, "
                        "got '%s'\n", optarg);
                return 2;
            }
            cfg.client_port = (uint16_t)v;
            break;
        case OPT_CLIENT_RING:
            if (parse_u64(optarg, &v) || v == 0 || v > (1u << 24)) {
                fprintf(stderr, "paxosfs: --client-ring needs 1 to %u, got "
                        "'%s'\n", 1u << 24, optarg);
                return 2;
            }
            cfg.client_ring = (uint32_t)v;
            break;
        case OPT_JOIN: cfg.join = true; break;
        case OPT_NO_PROMOTE: cfg.no_promote = true; break;
        case OPT_PROMOTE_LAG:
            if (parse_u64(optarg, &v)) {
                fprintf(stderr, "paxosfs: --promote-lag needs a number of "
                        "slots, got '%s'\n", optarg);
                return 2;
            }
            cfg.promote_lag = v;
            break;
        case OPT_KEY: key_path = optarg; break;
        case OPT_LEADER_CPUS: {
            char cerr[256];
            if (cpus_parse(optarg, &leader_cpus, cerr, sizeof cerr) < 0) {
                fprintf(stderr, "paxosfs: --leader-cpus: %s\n", cerr);
                return 2;
            }
            cfg.leader_cpus = &leader_cpus;
            break;
        }
        case 'f': foreground = true; break;
        case 'd': cfg.fuse_debug = true; foreground = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (client_mode)
        return client_main(argc, argv, &cfg, peers_spec, key_path, log_path,
                           foreground);
    if (!data || optind != argc - 1) {
        fprintf(stderr, "paxosfs: %s\n", !data ? "--data DIR is required"
                                              : "exactly one MOUNTPOINT is required");
        usage(stderr);
        return 2;
    }
    static net_peer_addr peers[TRANSPORT_MAX_PEERS];
    static keys key;
    char perr[256] = "";
    if (peers_spec) {
        if (net_parse_peers(peers_spec, peers, TRANSPORT_MAX_PEERS,
                            &cfg.n_peers, perr, sizeof perr) < 0) {
            fprintf(stderr, "paxosfs: --peers: %s\n", perr);
            return 2;
        }
        cfg.peers = peers;
    }
    if (cfg.join && cfg.n_peers < 2) {
        fprintf(stderr, "paxosfs: --join needs --peers naming the members "
                "and this node\n");
        return 2;
    }
    if (key_path) {
        if (keys_load(key_path, &key, perr, sizeof perr) < 0) {
            fprintf(stderr, "paxosfs: --key %s: %s\n", key_path, perr);
            return 2;
        }
        if (perr[0])   /* "warning: ..." */
            fprintf(stderr, "paxosfs: %s\n", perr);
        cfg.key = &key;
    } else if (cfg.n_peers > 1) {
        fprintf(stderr, "paxosfs: warning: no --key: peer traffic is not "
                "authenticated\n");
    }
    char *mountpoint = realpath(argv[optind], NULL);
    struct stat st;
    if (!mountpoint || stat(mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "paxosfs: mount point %s is not an existing directory\n",
                argv[optind]);
        free(mountpoint);
        return 2;
    }
    char *data_dir = absolute(data);
    char *log_file = NULL;
    if (!data_dir) {
        fprintf(stderr, "paxosfs: cannot resolve %s\n", data);
        return 2;
    }
    if (log_path) {
        log_file = absolute(log_path);
    } else {
        size_t len = strlen(data_dir) + sizeof "/paxosfs.log";
        log_file = malloc(len);
        if (log_file)
            snprintf(log_file, len, "%s/paxosfs.log", data_dir);
    }
    if (!log_file) {
        fprintf(stderr, "paxosfs: out of memory\n");
        return 2;
    }
    cfg.data_dir = data_dir;
    cfg.mountpoint = mountpoint;
    cfg.log_path = foreground ? NULL : log_file;

    int exit_code = 1;
    int ready_pipe[2] = { -1, -1 };
    if (!foreground) {
        if (pipe(ready_pipe) != 0) {
            perror("paxosfs: pipe");
            goto out_free_paths;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("paxosfs: fork");
            goto out_free_paths;
        }
        if (pid > 0) {
            close(ready_pipe[1]);
            char status = 1;
            ssize_t r;
            do
                r = read(ready_pipe[0], &status, 1);
            while (r < 0 && errno == EINTR);
            exit_code = r == 1 ? status : 1;
            goto out_free_paths;
        }
        close(ready_pipe[0]);
        setsid();
    }

    char nofile[200] = "";
    raise_nofile(nofile, sizeof nofile);
    char err[1024] = "";
    node *n = NULL;
    int rc = node_open(&cfg, &n, err, sizeof err);
    if (rc == 0)
        rc = node_mount(n, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "paxosfs: node %u: %s\n", cfg.id, err);
        node_close(n);
        if (!foreground) {
            char status = 1;
            if (write(ready_pipe[1], &status, 1) < 0)
                perror("paxosfs: write");
        }
        goto out_free_paths;
    }
    fprintf(stderr, "paxosfs: node %u serving %s from %s\n", cfg.id,
            mountpoint, data_dir);
    if (!foreground) {
        int fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (null_fd >= 0) {
            dup2(null_fd, STDIN_FILENO);
            close(null_fd);
        }
        setvbuf(stderr, NULL, _IOLBF, 0);
        if (chdir("/") != 0)
            perror("paxosfs: chdir");
        char status = 0;
        if (write(ready_pipe[1], &status, 1) < 0)
            perror("paxosfs: write");
        close(ready_pipe[1]);
    }
    fprintf(stderr, "paxosfs: node %u: %s\n", cfg.id, nofile);
    rc = node_run(n);
    node_close(n);
    fprintf(stderr, "paxosfs: node %u stopped%s\n", cfg.id, rc ? " after a storage failure" : "");
    exit_code = rc ? 1 : 0;
out_free_paths:
    free(data_dir);
    free(mountpoint);
    free(log_file);
    return exit_code;
}

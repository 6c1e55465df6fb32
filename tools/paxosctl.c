/*
 * paxosctl.c - the paxosfs admin tool.  Owns the command line: a table of
 * subcommands, each with its own usage line and handler.  Add a command
 * by adding a row to `commands` (status, keygen, membership come later).
 *
 * Exit status, for every subcommand:
 *   0  success
 *   1  the thing checked is bad (e.g. verify found damage)
 *   2  usage error, or the check could not be carried out (I/O error,
 *      missing directory, out of memory)
 *   3  (member) not now: another change is under way, no leader, or the
 *      change did not commit in time; retrying later may succeed
 *
 * Invariants:
 *   1. Read-only subcommands open nothing for writing.
 *   2. Results go to stdout, problems to stderr, one line each, so that
 *      scripts can parse them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../chain/chain.h"
#include "../chain/snap.h"
#include "../net/keys.h"
#include "../net/admin.h"

enum { EXIT_OK = 0, EXIT_BAD = 1, EXIT_ERROR = 2, EXIT_AGAIN = 3 };

typedef struct ctl_command {
    const char *name;
    const char *args;       /* usage after the name */
    const char *summary;
    int (*run)(int argc, char **argv);  /* argv[0] is the command name */
} ctl_command;

static int cmd_help(int argc, char **argv);
static int cmd_verify(int argc, char **argv);
static int cmd_keygen(int argc, char **argv);
static int cmd_status(int argc, char **argv);
static int cmd_link(int argc, char **argv);
static int cmd_snapshot(int argc, char **argv);
static int cmd_backup(int argc, char **argv);
static int cmd_restore(int argc, char **argv);
static int cmd_member(int argc, char **argv);

static const ctl_command commands[] = {
    { "verify", "DIR",
      "verify the snapshots, the hash chain after them and the acceptor "
      "store in backing directory DIR (read-only)", cmd_verify },
    { "backup", "DIR FILE",
      "write a verified backup (snapshot + chain after it) of the node's "
      "DIR to FILE (running or stopped)", cmd_backup },
    { "restore", "[--new-cluster] FILE DIR",
      "check backup FILE and prepare a new backing directory DIR from it "
      "(--new-cluster: every member of a new cluster is restored from FILE)",
      cmd_restore },
    { "keygen", "[--force] FILE",
      "write a new cluster key file (mode 0600) and print its public key",
      cmd_keygen },
    { "status", "DIR",
      "print the .status JSON of the node serving backing directory DIR",
      cmd_status },
    { "link", "DIR drop|heal J",
      "fault switch: the node of DIR drops (or again passes) all traffic to "
      "and from node J", cmd_link },
    { "snapshot", "DIR",
      "the node serving DIR takes a snapshot of its state now; prints its "
      "index, key count and sizes once it is durable", cmd_snapshot },
    { "member", "list|add|remove|promote DIR [ID=HOST:PORT|ID]",
      "list the members, or change the configuration through the node of "
      "DIR (it forwards to the leader; one change at a time): add a node "
      "as a learner, remove one, promote a learner to voter", cmd_member },
    { "help", "", "show this help", cmd_help },
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: paxosctl COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", commands[i].name,
                 commands[i].args);
        fprintf(out, "  %-22s %s\n", left, commands[i].summary);
    }
    fprintf(out, "\nexit status: 0 ok, 1 damaged/bad/refused, 2 usage or I/O error, "
            "3 not now (member: retry)\n");
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    usage(stdout);
    return EXIT_OK;
}

static void hex(const uint8_t *p, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static bool is_snapshot_path(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && strcmp(path + n - 4, ".pxs") == 0;
}

/* verify: the snapshots (every file completely: checksums, SHA-256, state
 * digest recomputed from the records), the chain after the newest valid
 * one (every block and link, continuing the snapshot's head hash, and
 * still holding the position the acceptor store recorded as durable) and
 * the acceptor store (every record; present beside a non-empty chain).
 * Damage of any of them is exit 1. */
static int cmd_verify(int argc, char **argv)
{
    char h1[2 * CHAIN_HASH_BYTES + 1], h2[2 * KV_DIGEST_BYTES + 1];
    chain_damage damage;
    acceptor_verify av;
    chain_restored r;
    chain_restore_report rep;
    bool bad = false;

    if (argc != 2) {
        fprintf(stderr, "usage: paxosctl verify DIR\n");
        return EXIT_ERROR;
    }
    int arc = acceptor_verify_dir(argv[1], &av);
    if (arc == -EBADMSG) {
        fprintf(stderr, "damaged: %s offset %llu: %s (acceptor store: "
                "promises or accepted values may be lost)\n", av.damage.path,
                (unsigned long long)av.damage.offset, av.damage.reason);
        bad = true;
    } else if (arc) {
        fprintf(stderr, "paxosctl verify: %s: acceptor store: %s\n", argv[1],
                strerror(-arc));
        return EXIT_ERROR;
    }
    /* the mark of what could be read holds even for a damaged store */
    int rc = chain_verify_all(argv[1], &av.info.mark, &r, &rep, &damage);
    for (uint32_t i = 0; i < rep.snaps.n_damaged; i++) {
        const chain_damage *d = &rep.snaps.damaged[i];
        if (is_snapshot_path(d->path))
            fprintf(stderr, "damaged: %s offset %llu snapshot %llu: %s\n",
                    d->path, (unsigned long long)d->offset,
                    (unsigned long long)d->index, d->reason);
        else
            fprintf(stderr, "damaged: %s offset %llu block %llu: %s\n",
                    d->path, (unsigned long long)d->offset,
                    (unsigned long long)d->index, d->reason);
    }
    if (rc == -EBADMSG) {
        bool listed = false;
        for (uint32_t i = 0; i < rep.snaps.n_damaged; i++)
            listed |= strcmp(rep.snaps.damaged[i].path, damage.path) == 0 &&
                      rep.snaps.damaged[i].offset == damage.offset;
        if (!listed)
            fprintf(stderr, "damaged: %s offset %llu block %llu: %s\n",
                    damage.path, (unsigned long long)damage.offset,
                    (unsigned long long)damage.index, damage.reason);
        if (rep.snaps.fell_back)
            fprintf(stderr, "note: a restart falls back to an older "
                    "snapshot\n");
        return EXIT_BAD;
    }
    if (rc) {
        fprintf(stderr, "paxosctl verify: %s: %s\n", argv[1], strerror(-rc));
        return EXIT_ERROR;
    }
    uint64_t head = r.index;
    hex(r.head_hash, CHAIN_HASH_BYTES, h1);
    printf("ok: head index %llu hash %s\n", (unsigned long long)head, h1);
    if (r.has_snap) {
        hex(r.snap.head_hash, CHAIN_HASH_BYTES, h1);
        hex(r.snap.digest, KV_DIGEST_BYTES, h2);
        printf("snapshot: index %llu head hash %s state digest %s, %llu "
               "keys, %llu bytes (%llu raw); chain from block %llu\n",
               (unsigned long long)r.snap.index, h1, h2,
               (unsigned long long)r.snap.keys,
               (unsigned long long)r.snap.file_bytes,
               (unsigned long long)r.snap.raw_bytes,
               (unsigned long long)chain_base_index(r.chain) + 1);
    }
    chain_restored_close(&r);
    if (rep.chain.torn_bytes)
        fprintf(stderr, "note: torn tail (an interrupted append) in %s at "
                        "offset %llu, %llu bytes; the node cuts it on next "
                        "start\n", rep.chain.torn_path,
                (unsigned long long)rep.chain.torn_offset,
                (unsigned long long)rep.chain.torn_bytes);
    if (rep.chain.reset)
        fprintf(stderr, "note: the chain ends at block %llu, before the "
                "snapshot; the node continues it after the snapshot on next "
                "start\n", (unsigned long long)rep.chain.reset_head);
    if (av.missing && head > 0) {
        fprintf(stderr, "damaged: %s: missing beside a chain of %llu blocks "
                "(acceptor store: promises and accepted values lost)\n",
                av.path, (unsigned long long)head);
        return EXIT_BAD;
    }
    if (bad)
        return EXIT_BAD;
    if (!av.missing) {
        printf("acceptor: promise %llu.%u, %u accepted slot(s)",
               (unsigned long long)av.promise.round, av.promise.node_id,
               av.n_accepts);
        if (av.n_accepts)
            printf(" %llu..%llu", (unsigned long long)av.first_slot,
                   (unsigned long long)av.last_slot);
        printf(", chain durable to block %llu, %llu start(s)\n",
               (unsigned long long)av.info.mark.index,
               (unsigned long long)av.info.incarnation);
    }
    if (av.torn_bytes)
        fprintf(stderr, "note: torn last write in %s at offset %llu, %llu "
                "bytes; the node cuts it on next start\n", av.path,
                (unsigned long long)av.torn_offset,
                (unsigned long long)av.torn_bytes);
    if (av.info.recovering)
        fprintf(stderr, "note: the acceptor state is known to be incomplete: "
                "the node recovers it from the other voters before it votes "
                "again\n");
    return EXIT_OK;
}

/* True when a node holds DIR/LOCK (it is running on DIR). */
static bool node_running(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

static void print_backup(const char *what, const char *file,
                         const backup_report *b)
{
    char h[2 * CHAIN_HASH_BYTES + 1];
    hex(b->head_hash, CHAIN_HASH_BYTES, h);
    printf("%s: %s: ", what, file);
    if (b->has_snap)
        printf("snapshot at block %llu", (unsigned long long)b->snap_index);
    else
        printf("no snapshot");
    if (b->head && b->first_block)
        printf(", blocks %llu..%llu", (unsigned long long)b->first_block,
               (unsigned long long)b->head);
    printf(", head hash %s, %llu bytes\n", h, (unsigned long long)b->bytes);
}

static int report_damage(const char *cmd, const char *what, int rc,
                         const chain_damage *d)
{
    if (rc == -EBADMSG) {
        fprintf(stderr, "damaged: %s offset %llu %s %llu: %s\n", d->path,
                (unsigned long long)d->offset,
                is_snapshot_path(d->path) ? "snapshot" : "block",
                (unsigned long long)d->index, d->reason);
        return EXIT_BAD;
    }
    fprintf(stderr, "paxosctl %s: %s: %s\n", cmd, what, strerror(-rc));
    return EXIT_ERROR;
}

static int take_snapshot(const char *dir, bool quiet);

/* backup: the backing directory's newest valid snapshot and the chain
 * after it, verified, into FILE.  A node running on DIR is first asked
 * for a snapshot of its state (frozen in O(1) while it goes on serving),
 * so the backup holds that snapshot and the few blocks after it; the
 * files are then read as `verify` reads them (snapshot files are only
 * ever renamed into place complete, chain blocks only appended: a block
 * being appended is a torn tail and left out).  Should the node remove
 * what was being read (two more snapshots meanwhile), the backup is
 * started again, up to three times. */
static int cmd_backup(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: paxosctl backup DIR FILE\n");
        return EXIT_ERROR;
    }
    bool online = node_running(argv[1]);
    if (online && take_snapshot(argv[1], true) != EXIT_OK)
        fprintf(stderr, "note: the node on %s took no snapshot now; backing "
                "up its newest one and the chain after it\n", argv[1]);
    backup_report b;
    chain_damage d;
    int rc = -EAGAIN;
    for (int attempt = 0; attempt < (online ? 3 : 1); attempt++) {
        if (attempt)
            usleep(200 * 1000);
        rc = backup_write_dir(argv[1], argv[2], &b, &d);
        if (rc != -ENOENT && rc != -EBADMSG)
            break;   /* -EBADMSG twice in a row (online) is damage */
        if (rc == -EBADMSG && attempt > 0)
            break;
    }
    if (rc)
        return report_damage("backup", argv[1], rc, &d);
    print_backup(online ? "backup (online)" : "backup", argv[2], &b);
    return EXIT_OK;
}

/* restore: check a backup file completely, then prepare backing directory
 * DIR (absent or empty) from it. */
static int cmd_restore(int argc, char **argv)
{
    bool new_cluster = argc == 4 && strcmp(argv[1], "--new-cluster") == 0;
    if (new_cluster) {
        argv++;
        argc--;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: paxosctl restore [--new-cluster] FILE DIR\n");
        return EXIT_ERROR;
    }
    backup_report b;
    chain_damage d;
    int rc = backup_restore_ex(argv[1], argv[2], new_cluster, &b, &d);
    if (rc == -ENOTEMPTY) {
        fprintf(stderr, "paxosctl restore: %s is not empty; restore into a "
                "new directory\n", argv[2]);
        return EXIT_ERROR;
    }
    if (rc)
        return report_damage("restore", argv[1], rc, &d);
    print_backup("restored", argv[2], &b);
    if (new_cluster)
        printf("note: a member of a new cluster: start every member from "
               "the same backup\n");
    else
        printf("note: the node starts recovering its acceptor state: in a "
               "cluster it votes again once the other voters answered it\n");
    return EXIT_OK;
}

/* keygen: one CURVE keypair for the whole cluster (net/keys.h).  The
 * public key goes to stdout alone on its line, so scripts can capture it;
 * an existing file is never replaced without --force. */
static int cmd_keygen(int argc, char **argv)
{
    const char *path = NULL;
    bool force = false;
    keys k;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (!path && argv[i][0] != '-') {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (!path || argc > 3) {
        fprintf(stderr, "usage: paxosctl keygen [--force] FILE\n");
        return EXIT_ERROR;
    }
    int rc = keys_generate(&k);
    if (rc) {
        fprintf(stderr, "paxosctl keygen: cannot generate a CURVE keypair: "
                        "%s\n", strerror(-rc));
        return EXIT_ERROR;
    }
    rc = keys_save(path, &k, force);
    if (rc == -EEXIST) {
        fprintf(stderr, "paxosctl keygen: %s already exists; use --force to "
                        "replace it\n", path);
    } else if (rc == -EINVAL) {
        fprintf(stderr, "paxosctl keygen: %s is not a regular file; "
                        "refusing to replace it\n", path);
    } else if (rc) {
        fprintf(stderr, "paxosctl keygen: %s: %s\n", path, strerror(-rc));
    } else {
        printf("%s\n", k.public_z85);
    }
    explicit_bzero(&k, sizeof k);
    return rc ? EXIT_ERROR : EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_ERROR;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "paxosctl: unknown command '%s'\n\n", name);
    usage(stderr);
    return EXIT_ERROR;
}

/* Ask the node serving `dir` over its admin socket; print the reply. */
static int admin_request(const char *dir, const char *request)
{
    char *reply = NULL;
    int rc = admin_call(dir, request, 5000, &reply);
    if (rc < 0) {
        fprintf(stderr, "paxosctl: no answer from a node serving %s: %s\n", dir,
                rc == -ENOENT ? "no admin socket (is the node running?)"
                              : strerror(-rc));
        return EXIT_ERROR;
    }
    int bad = strncmp(reply, "error", 5) == 0;
    fprintf(bad ? stderr : stdout, "%s%s", reply,
            reply[0] && reply[strlen(reply) - 1] == '\n' ? "" : "\n");
    free(reply);
    return bad ? EXIT_BAD : EXIT_OK;
}

static int cmd_status(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: paxosctl status DIR\n");
        return EXIT_ERROR;
    }
    return admin_request(argv[1], "status");
}

static int cmd_link(int argc, char **argv)
{
    char *end = NULL;
    unsigned long peer = argc == 4 ? strtoul(argv[3], &end, 10) : 0;
    if (argc != 4 || (strcmp(argv[2], "drop") != 0 && strcmp(argv[2], "heal") != 0) ||
        !end || *end || peer == 0 || peer > 0xffffffffUL) {
        fprintf(stderr, "usage: paxosctl link DIR drop|heal J\n");
        return EXIT_ERROR;
    }
    char request[64];
    snprintf(request, sizeof request, "link %s %lu", argv[2], peer);
    return admin_request(argv[1], request);
}

/* Start a snapshot, then wait (polling, up to 10 minutes) until the node
 * reports it durable. */
static int cmd_snapshot(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: paxosctl snapshot DIR\n");
        return EXIT_ERROR;
    }
    return take_snapshot(argv[1], false);
}

/* The node serving `dir` takes a snapshot now; once it is durable, its
 * line is printed (not when quiet). */
static int take_snapshot(const char *dir, bool quiet)
{
    const char *argv[2] = { "snapshot", dir };
    char *reply = NULL;
    int rc = admin_call(argv[1], "snapshot", 5000, &reply);
    if (rc < 0) {
        fprintf(stderr, "paxosctl: no answer from a node serving %s: %s\n",
                argv[1], rc == -ENOENT ? "no admin socket (is the node "
                "running?)" : strerror(-rc));
        return EXIT_ERROR;
    }
    unsigned long long index = 0;
    if (sscanf(reply, "started %llu", &index) != 1) {
        fprintf(stderr, "paxosctl: %s\n", reply);
        free(reply);
        return EXIT_BAD;
    }
    free(reply);
    char request[64];
    snprintf(request, sizeof request, "snapshot-wait %llu", index);
    for (int i = 0; i < 6000; i++) {
        rc = admin_call(argv[1], request, 5000, &reply);
        if (rc < 0) {
            fprintf(stderr, "paxosctl: the node serving %s stopped "
                    "answering: %s\n", argv[1], strerror(-rc));
            return EXIT_ERROR;
        }
        if (strncmp(reply, "done ", 5) == 0) {
            if (!quiet)
                printf("snapshot %s\n", reply + 5);
            free(reply);
            return EXIT_OK;
        }
        if (strncmp(reply, "running", 7) != 0) {
            fprintf(stderr, "paxosctl: %s\n", reply);
            free(reply);
            return EXIT_BAD;
        }
        free(reply);
        usleep(100 * 1000);
    }
    fprintf(stderr, "paxosctl: the snapshot did not finish within 10 "
            "minutes\n");
    return EXIT_ERROR;
}

/* Changes wait for their CONFIG to commit (the node answers then, or
 * after 10 s, 15 s when it forwarded the request to the leader). */
#define MEMBER_TIMEOUT_MS 30000

static int cmd_member(int argc, char **argv)
{
    const char *usage_line = "usage: paxosctl member list DIR | member add "
                             "DIR ID=HOST:PORT | member remove DIR ID | "
                             "member promote DIR ID\n";
    bool list = argc == 3 && strcmp(argv[1], "list") == 0;
    bool change = argc == 4 && (strcmp(argv[1], "add") == 0 ||
                                strcmp(argv[1], "remove") == 0 ||
                                strcmp(argv[1], "promote") == 0);
    if (!list && !change) {
        fprintf(stderr, "%s", usage_line);
        return EXIT_ERROR;
    }
    char request[ADMIN_MAX_REQUEST + 1];
    int n = list ? snprintf(request, sizeof request, "member list")
                 : snprintf(request, sizeof request, "member %s %s", argv[1],
                            argv[3]);
    if (n < 0 || (size_t)n >= sizeof request) {
        fprintf(stderr, "paxosctl: member: argument too long\n");
        return EXIT_ERROR;
    }
    char *reply = NULL;
    int rc = admin_call(argv[2], request, MEMBER_TIMEOUT_MS, &reply);
    if (rc < 0) {
        fprintf(stderr, "paxosctl: no answer from a node serving %s: %s\n",
                argv[2], rc == -ENOENT ? "no admin socket (is the node "
                "running?)" : strerror(-rc));
        return EXIT_ERROR;
    }
    int code = EXIT_OK;
    if (strncmp(reply, "error: busy:", 12) == 0 ||
        strncmp(reply, "error: again:", 13) == 0)
        code = EXIT_AGAIN;
    else if (strncmp(reply, "error", 5) == 0)
        code = EXIT_BAD;
    fprintf(code ? stderr : stdout, "%s%s", reply,
            reply[0] && reply[strlen(reply) - 1] == '\n' ? "" : "\n");
    free(reply);
    return code;
}

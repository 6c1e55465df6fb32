/*
 * test_net_keys.c - the cluster key file (net/keys.c) and the ZAP handler
 * (net/zap.c): key generation, save/load round trips, every kind of bad
 * key file, the permission warning, the ZAP policy on hand-made requests,
 * and a real CURVE handshake between a ROUTER and DEALERs over
 * tcp://127.0.0.1 where only the holder of the cluster key gets through.
 *
 * No sleeps: every wait is a zmq_poll with a timeout, bounded in count.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "../../net/keys.h"
#include "../../net/zap.h"

/* ------------------------------------------------------------- fixture */

typedef struct fixture {
    char dir[64];
    char path[128];   /* dir/cluster.key */
    char other[128];  /* dir/other.key */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/paxosfs-keys-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/cluster.key", f->dir);
    snprintf(f->other, sizeof f->other, "%s/other.key", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->path);
    unlink(f->other);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* Load `text` as a key file; return rc, leave the message in err. */
static int load_text(const fixture *f, const char *text, char *err,
                     size_t err_len)
{
    keys k;
    write_text(f->other, text, 0600);
    return keys_load(f->other, &k, err, err_len);
}

/* --------------------------------------------------------------- keys */

static void test_generate_gives_a_consistent_pair(void **state)
{
    (void)state;
    keys a, b;
    assert_int_equal(keys_generate(&a), 0);
    assert_int_equal(keys_generate(&b), 0);
    assert_int_equal(strlen(a.public_z85), KEYS_Z85_CHARS);
    assert_int_equal(strlen(a.secret_z85), KEYS_Z85_CHARS);
    assert_string_not_equal(a.public_z85, b.public_z85);
    char derived[KEYS_Z85_CHARS + 1];
    assert_int_equal(zmq_curve_public(derived, a.secret_z85), 0);
    assert_string_equal(derived, a.public_z85);
    uint8_t bin[KEYS_BINARY_BYTES];
    assert_non_null(zmq_z85_decode(bin, a.public_z85));
    assert_memory_equal(bin, a.public_binary, KEYS_BINARY_BYTES);
}

static void test_save_load_round_trip(void **state)
{
    fixture *f = *state;
    keys k, back;
    char err[256];
    assert_int_equal(keys_generate(&k), 0);
    assert_int_equal(keys_save(f->path, &k, false), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(keys_load(f->path, &back, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_memory_equal(&k, &back, sizeof k);

    /* no temporary file left behind: cluster.key is the only entry */
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            entries++;
            assert_string_equal(e->d_name, "cluster.key");
        }
    closedir(d);
    assert_int_equal(entries, 1);
}

static void test_save_refuses_to_overwrite(void **state)
{
    fixture *f = *state;
    keys k1, k2, back;
    char err[256];
    assert_int_equal(keys_generate(&k1), 0);
    assert_int_equal(keys_generate(&k2), 0);
    assert_int_equal(keys_save(f->path, &k1, false), 0);
    assert_int_equal(keys_save(f->path, &k2, false), -EEXIST);
    assert_int_equal(keys_load(f->path, &back, err, sizeof err), 0);
    assert_string_equal(back.public_z85, k1.public_z85);
    assert_int_equal(keys_save(f->path, &k2, true), 0);
    assert_int_equal(keys_load(f->path, &back, err, sizeof err), 0);
    assert_string_equal(back.public_z85, k2.public_z85);
}

static void test_load_accepts_comments_spaces_crlf(void **state)
{
    fixture *f = *state;
    keys k, back;
    char text[512], err[256];
    assert_int_equal(keys_generate(&k), 0);
    snprintf(text, sizeof text,
             "# a comment\r\n\r\n   \n"
             "secret:\t %s  \r\n"
             "# another\npublic:%s",      /* no final newline */
             k.secret_z85, k.public_z85);
    write_text(f->other, text, 0600);
    assert_int_equal(keys_load(f->other, &back, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_memory_equal(&k, &back, sizeof k);
}

static void test_load_bad_files(void **state)
{
    fixture *f = *state;
    keys k, other;
    char text[8192], err[256];
    assert_int_equal(keys_generate(&k), 0);
    assert_int_equal(keys_generate(&other), 0);

    /* missing file */
    keys out;
    assert_int_equal(keys_load(f->path, &out, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "No such file"));

    /* a directory */
    assert_int_equal(keys_load(f->dir, &out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));

    /* empty, and one line missing */
    assert_int_equal(load_text(f, "", err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "no 'public:' line"));
    snprintf(text, sizeof text, "public: %s\n", k.public_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "no 'secret:' line"));

    /* wrong lengths */
    snprintf(text, sizeof text, "public: %.39s\nsecret: %s\n", k.public_z85,
             k.secret_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "39 characters, expected 40"));
    snprintf(text, sizeof text, "public: %s\nsecret: %sA\n", k.public_z85,
             k.secret_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 2: secret key has 41 characters"));

    /* not Z85 */
    char bad[KEYS_Z85_CHARS + 1];
    memcpy(bad, k.secret_z85, sizeof bad);
    bad[10] = '~';
    snprintf(text, sizeof text, "public: %s\nsecret: %s\n", k.public_z85,
             bad);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "not valid Z85"));

    /* public key of another pair */
    snprintf(text, sizeof text, "public: %s\nsecret: %s\n", other.public_z85,
             k.secret_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "does not match"));

    /* duplicate and unknown lines, garbage */
    snprintf(text, sizeof text, "public: %s\npublic: %s\nsecret: %s\n",
             k.public_z85, k.public_z85, k.secret_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 2: second 'public:'"));
    snprintf(text, sizeof text, "public: %s\nsecret: %s\nserver: x\n",
             k.public_z85, k.secret_z85);
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "line 3: unknown field 'server'"));
    assert_int_equal(load_text(f, "hello world\n", err, sizeof err),
                     -EBADMSG);
    assert_non_null(strstr(err, "line 1: expected"));

    /* too large */
    memset(text, '#', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_int_equal(load_text(f, text, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "at most"));

    /* a failed load leaves the caller's struct alone */
    memset(&out, 0x5A, sizeof out);
    keys before = out;
    assert_int_equal(load_text(f, "public: x\n", err, sizeof err), -EBADMSG);
    assert_int_equal(keys_load(f->other, &out, err, sizeof err), -EBADMSG);
    assert_memory_equal(&out, &before, sizeof out);
}

static void test_load_warns_on_loose_permissions(void **state)
{
    fixture *f = *state;
    keys k, back;
    char err[256];
    assert_int_equal(keys_generate(&k), 0);
    assert_int_equal(keys_save(f->path, &k, false), 0);
    assert_int_equal(chmod(f->path, 0644), 0);
    assert_int_equal(keys_load(f->path, &back, err, sizeof err), 0);
    assert_non_null(strstr(err, "warning"));
    assert_non_null(strstr(err, "644"));
    assert_memory_equal(&k, &back, sizeof k);
    assert_int_equal(chmod(f->path, 0600), 0);
    assert_int_equal(keys_load(f->path, &back, err, sizeof err), 0);
    assert_string_equal(err, "");
}

/* A FIFO as --key used to hang the node at start-up: open() waited for a
 * writer.  Now it is refused at once, like a device.  alarm() is the
 * deadline: a hang kills the test (SIGALRM) instead of blocking it. */
static void test_load_refuses_fifo_and_devices(void **state)
{
    fixture *f = *state;
    keys out, before;
    char err[256];
    memset(&out, 0x5A, sizeof out);
    before = out;
    assert_int_equal(mkfifo(f->other, 0600), 0);
    alarm(10);
    int rc = keys_load(f->other, &out, err, sizeof err);
    alarm(0);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, f->other));
    assert_non_null(strstr(err, "not a regular file"));
    assert_non_null(strstr(err, "FIFO"));
    alarm(10);
    rc = keys_load("/dev/null", &out, err, sizeof err);
    alarm(0);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    assert_non_null(strstr(err, "device"));
    assert_memory_equal(&out, &before, sizeof out);
}

/* keygen --force replaces a key file, but never a FIFO, a device or a
 * symbolic link in its place (as root, --force onto /dev/null would have
 * replaced the device node). */
static void test_save_replaces_only_regular_files(void **state)
{
    fixture *f = *state;
    keys k;
    struct stat st;
    assert_int_equal(keys_generate(&k), 0);
    assert_int_equal(mkfifo(f->other, 0600), 0);
    alarm(10);
    assert_int_equal(keys_save(f->other, &k, true), -EINVAL);
    assert_int_equal(keys_save(f->other, &k, false), -EEXIST);
    alarm(0);
    assert_int_equal(lstat(f->other, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(unlink(f->other), 0);
    assert_int_equal(symlink("/dev/null", f->other), 0);
    assert_int_equal(keys_save(f->other, &k, true), -EINVAL);
    assert_int_equal(lstat(f->other, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(unlink(f->other), 0);
    /* nothing left behind but the fixture's files */
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        assert_true(strcmp(e->d_name, ".") == 0 ||
                    strcmp(e->d_name, "..") == 0);
    closedir(d);
}

/* ----------------------------------------------------------------- ZAP */

/* Send a hand-made ZAP request over a REQ socket, let the handler answer
 * it, and return the status code frame as an int. */
static int zap_ask(zap *z, void *req, const char *const *frames, int n,
                   const void *cred, size_t cred_len, char *id_back)
{
    for (int i = 0; i < n; i++)
        assert_true(zmq_send(req, frames[i], strlen(frames[i]),
                             (i + 1 < n || cred) ? ZMQ_SNDMORE : 0) >= 0);
    if (cred)
        assert_true(zmq_send(req, cred, cred_len, 0) >= 0);
    zmq_pollitem_t item = {.socket = zap_socket(z), .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&item, 1, 2000), 1);
    assert_int_equal(zap_handle(z), 0);
    assert_int_equal(zap_handle(z), -EAGAIN);
    char parts[6][64];
    int got = 0;
    int more = 1;
    for (; more && got < 6; got++) {
        int len = zmq_recv(req, parts[got], sizeof parts[got] - 1, 0);
        assert_true(len >= 0);
        parts[got][len < 63 ? len : 63] = '\0';
        size_t sz = sizeof more;
        assert_int_equal(zmq_getsockopt(req, ZMQ_RCVMORE, &more, &sz), 0);
    }
    assert_int_equal(got, 6);
    assert_int_equal(more, 0);
    assert_string_equal(parts[0], "1.0");
    strcpy(id_back, parts[1]);
    return atoi(parts[2]);
}

static void test_zap_policy(void **state)
{
    (void)state;
    keys cluster, other;
    assert_int_equal(keys_generate(&cluster), 0);
    assert_int_equal(keys_generate(&other), 0);
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    zap *z = NULL;
    assert_int_equal(zap_open(ctx, &cluster, &z), 0);
    zap *second = NULL;
    assert_int_equal(zap_open(ctx, &cluster, &second), -EADDRINUSE);
    assert_int_equal(zap_handle(z), -EAGAIN);

    void *req = zmq_socket(ctx, ZMQ_REQ);
    int linger_ms = 0;
    zmq_setsockopt(req, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    assert_int_equal(zmq_connect(req, "inproc://zeromq.zap.01"), 0);

    const char *curve[] = {"1.0", "id-1", "paxosfs", "127.0.0.1", "",
                           "CURVE"};
    const char *null_mech[] = {"1.0", "id-2", "paxosfs", "127.0.0.1", "",
                               "NULL"};
    const char *bad_version[] = {"2.0", "id-3", "paxosfs", "127.0.0.1", "",
                                 "CURVE"};
    const char *short_req[] = {"1.0", "id-4", "paxosfs"};
    const char *plain[] = {"1.0", "id-5", "paxosfs", "127.0.0.1", "",
                           "PLAIN", "user", "pass"};
    const char *too_many[] = {"1.0", "id-6", "a", "b", "c", "CURVE", "x",
                              "y", "z", "w"};
    char id[64];

    assert_int_equal(zap_ask(z, req, curve, 6, cluster.public_binary, 32, id),
                     200);
    assert_string_equal(id, "id-1");
    assert_int_equal(zap_ask(z, req, curve, 6, other.public_binary, 32, id),
                     400);
    assert_int_equal(zap_ask(z, req, curve, 6, cluster.public_binary, 31, id),
                     500);
    assert_int_equal(zap_ask(z, req, null_mech, 6, NULL, 0, id), 400);
    assert_string_equal(id, "id-2");
    assert_int_equal(zap_ask(z, req, bad_version, 6, cluster.public_binary,
                             32, id), 500);
    assert_int_equal(zap_ask(z, req, short_req, 3, NULL, 0, id), 500);
    assert_int_equal(zap_ask(z, req, plain, 8, NULL, 0, id), 400);
    assert_int_equal(zap_ask(z, req, too_many, 10, NULL, 0, id), 500);
    assert_string_equal(id, "id-6");   /* still echoed */
    assert_int_equal(zap_admissions(z), 1);
    assert_int_equal(zap_rejections(z), 7);

    zmq_close(req);
    zap_close(z);

    /* without a key: only NULL is admitted */
    assert_int_equal(zap_open(ctx, NULL, &z), 0);
    req = zmq_socket(ctx, ZMQ_REQ);
    zmq_setsockopt(req, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    assert_int_equal(zmq_connect(req, "inproc://zeromq.zap.01"), 0);
    assert_int_equal(zap_ask(z, req, null_mech, 6, NULL, 0, id), 200);
    assert_int_equal(zap_ask(z, req, curve, 6, cluster.public_binary, 32, id),
                     400);
    zmq_close(req);
    zap_close(z);
    zmq_ctx_term(ctx);
}

static void *new_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    assert_non_null(s);
    int linger_ms = 0;
    assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &linger_ms,
                                    sizeof linger_ms), 0);
    return s;
}

typedef struct echo_state {
    unsigned router_msgs;      /* payloads the ROUTER received */
    unsigned router_foreign;   /* ... that were not "ping-good" */
    unsigned good_replies;
} echo_state;

/* One bounded turn of the node-like loop: ZAP first, then the ROUTER
 * echo, then the good DEALER's inbox. */
static void pump(zap *z, void *router, void *good, echo_state *st,
                 long timeout_ms)
{
    zmq_pollitem_t items[3] = {
        {.socket = zap_socket(z), .events = ZMQ_POLLIN},
        {.socket = router, .events = ZMQ_POLLIN},
        {.socket = good, .events = ZMQ_POLLIN},
    };
    assert_true(zmq_poll(items, 3, timeout_ms) >= 0);
    if (items[0].revents & ZMQ_POLLIN)
        for (int i = 0; i < 64 && zap_handle(z) == 0; i++)
            ;
    if (items[1].revents & ZMQ_POLLIN) {
        char id[256], body[64];
        int id_len = zmq_recv(router, id, sizeof id, ZMQ_DONTWAIT);
        assert_true(id_len > 0);
        int len = zmq_recv(router, body, sizeof body, ZMQ_DONTWAIT);
        assert_true(len >= 0);
        st->router_msgs++;
        if (len != 9 || memcmp(body, "ping-good", 9) != 0)
            st->router_foreign++;
        assert_true(zmq_send(router, id, (size_t)id_len, ZMQ_SNDMORE) >= 0);
        assert_true(zmq_send(router, body, (size_t)len, 0) >= 0);
    }
    if (items[2].revents & ZMQ_POLLIN) {
        char body[64];
        int len = zmq_recv(good, body, sizeof body, ZMQ_DONTWAIT);
        assert_int_equal(len, 9);
        assert_memory_equal(body, "ping-good", 9);
        st->good_replies++;
    }
}

static void test_curve_handshake_only_cluster_key_gets_through(void **state)
{
    (void)state;
    assert_true(zmq_has("curve"));
    keys cluster, stranger;
    assert_int_equal(keys_generate(&cluster), 0);
    assert_int_equal(keys_generate(&stranger), 0);
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);

    zap *z = NULL;
    assert_int_equal(zap_open(ctx, &cluster, &z), 0);   /* before bind */
    void *router = new_socket(ctx, ZMQ_ROUTER);
    assert_int_equal(keys_set_server(router, &cluster), 0);
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char endpoint[128];
    size_t ep_len = sizeof endpoint;
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint,
                                    &ep_len), 0);

    /* a stranger that knows the server key but not the cluster secret */
    void *wrong = new_socket(ctx, ZMQ_DEALER);
    assert_int_equal(zmq_setsockopt(wrong, ZMQ_CURVE_SERVERKEY,
                                    cluster.public_z85, 41), 0);
    assert_int_equal(zmq_setsockopt(wrong, ZMQ_CURVE_PUBLICKEY,
                                    stranger.public_z85, 41), 0);
    assert_int_equal(zmq_setsockopt(wrong, ZMQ_CURVE_SECRETKEY,
                                    stranger.secret_z85, 41), 0);
    /* a peer without CURVE at all */
    void *plain = new_socket(ctx, ZMQ_DEALER);
    /* a member */
    void *good = new_socket(ctx, ZMQ_DEALER);
    assert_int_equal(keys_set_client(good, &cluster), 0);

    assert_int_equal(zmq_connect(wrong, endpoint), 0);
    assert_int_equal(zmq_connect(plain, endpoint), 0);
    assert_int_equal(zmq_send(wrong, "ping-wrong", 10, 0), 10);
    assert_int_equal(zmq_send(plain, "ping-plain", 10, 0), 10);
    assert_int_equal(zmq_connect(good, endpoint), 0);
    assert_int_equal(zmq_send(good, "ping-good", 9, 0), 9);

    echo_state st = {0};
    /* at most 200 turns of <= 50 ms: 10 s worst case, ~ms normally */
    for (int turn = 0; turn < 200; turn++) {
        if (st.good_replies == 1 && zap_rejections(z) >= 1)
            break;
        pump(z, router, good, &st, 50);
    }
    assert_int_equal(st.good_replies, 1);
    assert_true(zap_admissions(z) >= 1);
    assert_true(zap_rejections(z) >= 1);

    /* give the refused peers a few more chances (they reconnect every
     * 100 ms): nothing of theirs may reach the ROUTER */
    for (int turn = 0; turn < 10; turn++)
        pump(z, router, good, &st, 30);
    assert_int_equal(st.router_msgs, 1);
    assert_int_equal(st.router_foreign, 0);
    zmq_pollitem_t bad_items[2] = {
        {.socket = wrong, .events = ZMQ_POLLIN},
        {.socket = plain, .events = ZMQ_POLLIN},
    };
    assert_int_equal(zmq_poll(bad_items, 2, 0), 0);

    zmq_close(good);
    zmq_close(plain);
    zmq_close(wrong);
    zmq_close(router);
    zap_close(z);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_gives_a_consistent_pair),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses_to_overwrite,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_load_accepts_comments_spaces_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_load_warns_on_loose_permissions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_fifo_and_devices,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_replaces_only_regular_files,
                                        setup, teardown),
        cmocka_unit_test(test_zap_policy),
        cmocka_unit_test(test_curve_handshake_only_cluster_key_gets_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * keys.c - owns the cluster key file (format in keys.h) and the CURVE
 * socket options built from it.
 *
 * Invariants:
 *   1. A keys struct that left keys_generate or keys_load successfully
 *      holds two NUL-terminated 40-character Z85 strings from the Z85
 *      alphabet, the public key is the one derived from the secret key,
 *      and public_binary is the decoded public key.
 *   2. keys_save never leaves a partial key file at `path`: the bytes go
 *      to a 0600 temporary file that is fsynced before it is linked or
 *      renamed into place; without `overwrite`, link() makes the refusal
 *      to replace an existing file atomic.
 *   3. keys_load reads at most KEYS_FILE_MAX_BYTES and never keeps secret
 *      material outside the caller's struct (the read buffer is wiped).
 *   4. Only regular files are key files: keys_load refuses anything else
 *      (a FIFO, a device, a directory) without blocking on it, and
 *      keys_save never replaces anything else (with overwrite, a
 *      `--force` onto /dev/null must not replace the device node).
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static const char keys_z85_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ".-:+=^!/*?&<>()[]{}@%$#";

static void keys_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void keys_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Wipe secret bytes in a way the compiler may not drop. */
static void keys_wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

static bool keys_z85_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || !strchr(keys_z85_alphabet, s[i]))
            return false;
    return true;
}

int keys_generate(keys *k)
{
    if (!k)
        return -EINVAL;
    if (!zmq_has("curve"))
        return -ENOTSUP;
    memset(k, 0, sizeof *k);
    if (zmq_curve_keypair(k->public_z85, k->secret_z85) != 0)
        return errno ? -errno : -ENOTSUP;
    if (!zmq_z85_decode(k->public_binary, k->public_z85))
        return -EINVAL;
    return 0;
}

/* ----------------------------------------------------------------- save */

static int keys_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync the directory holding `path`, so the new name is durable. */
static int keys_sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

int keys_save(const char *path, const keys *k, bool overwrite)
{
    char tmp[PATH_MAX];
    char text[256];
    int rc;

    if (!path || !*path || !k ||
        strlen(k->public_z85) != KEYS_Z85_CHARS ||
        strlen(k->secret_z85) != KEYS_Z85_CHARS)
        return -EINVAL;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!overwrite)
            return -EEXIST;   /* early, friendly answer; link() decides */
        if (!S_ISREG(st.st_mode))
            return -EINVAL;   /* invariant 4: never replace a non-file */
    }
    int len = snprintf(text, sizeof text,
                       "# paxosfs cluster key: copy this file to every node "
                       "of the cluster, keep it secret\n"
                       "public: %s\nsecret: %s\n",
                       k->public_z85, k->secret_z85);
    if (len < 0 || len >= (int)sizeof text)
        return -EINVAL;

    int fd = mkostemp(tmp, O_CLOEXEC);    /* created 0600 */
    if (fd < 0) {
        rc = -errno;
        goto wipe_text;
    }
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
        rc = -errno;
        goto remove_tmp;
    }
    rc = keys_write_all(fd, text, (size_t)len);
    if (rc)
        goto remove_tmp;
    if (fsync(fd) != 0) {
        rc = -errno;
        goto remove_tmp;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto remove_tmp;
    }
    fd = -1;
    if (overwrite) {
        if (rename(tmp, path) != 0) {
            rc = -errno;
            goto remove_tmp;
        }
    } else {
        if (link(tmp, path) != 0) {
            rc = -errno;
            goto remove_tmp;
        }
        unlink(tmp);
    }
    rc = keys_sync_dir(path);
    goto wipe_text;

remove_tmp:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
wipe_text:
    keys_wipe(text, sizeof text);
    return rc;
}

/* ----------------------------------------------------------------- load */

/* Trim spaces, tabs and a CR from both ends of [*s, *s + *n). */
static void keys_trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' ||
                  (*s)[*n - 1] == '\r'))
        (*n)--;
}

/* Store the value of a "name: value" line into dst (41 bytes). */
static int keys_take(const char *path, unsigned line_no, const char *name,
                     const char *value, size_t n, char *dst, bool *seen,
                     char *err, size_t err_len)
{
    if (*seen) {
        keys_err(err, err_len, "%s: line %u: second '%s:' line", path,
                 line_no, name);
        return -EBADMSG;
    }
    if (n != KEYS_Z85_CHARS) {
        keys_err(err, err_len,
                 "%s: line %u: %s key has %zu characters, expected %d",
                 path, line_no, name, n, KEYS_Z85_CHARS);
        return -EBADMSG;
    }
    if (!keys_z85_valid(value, n)) {
        keys_err(err, err_len,
                 "%s: line %u: %s key is not valid Z85 text", path, line_no,
                 name);
        return -EBADMSG;
    }
    memcpy(dst, value, n);
    dst[n] = '\0';
    *seen = true;
    return 0;
}

/* Parse the text of a key file into *k (see keys.h for the format). */
static int keys_parse(const char *path, const char *text, size_t len,
                      keys *k, char *err, size_t err_len)
{
    bool have_public = false, have_secret = false;
    unsigned line_no = 0;
    size_t pos = 0;
    int rc;

    while (pos < len) {   /* bounded: pos advances by >= 1 per line */
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        line_no++;
        keys_trim(&line, &n);
        if (n == 0 || line[0] == '#')
            continue;
        if (memchr(line, '\0', n)) {
            keys_err(err, err_len, "%s: line %u: NUL byte", path, line_no);
            return -EBADMSG;
        }
        const char *colon = memchr(line, ':', n);
        if (!colon) {
            keys_err(err, err_len,
                     "%s: line %u: expected 'public: KEY' or 'secret: KEY'",
                     path, line_no);
            return -EBADMSG;
        }
        size_t name_len = (size_t)(colon - line);
        const char *value = colon + 1;
        size_t value_len = n - name_len - 1;
        keys_trim(&value, &value_len);
        if (name_len == 6 && memcmp(line, "public", 6) == 0)
            rc = keys_take(path, line_no, "public", value, value_len,
                           k->public_z85, &have_public, err, err_len);
        else if (name_len == 6 && memcmp(line, "secret", 6) == 0)
            rc = keys_take(path, line_no, "secret", value, value_len,
                           k->secret_z85, &have_secret, err, err_len);
        else {
            keys_err(err, err_len, "%s: line %u: unknown field '%.*s'", path,
                     line_no, (int)(name_len > 32 ? 32 : name_len), line);
            rc = -EBADMSG;
        }
        if (rc)
            return rc;
    }
    if (!have_public || !have_secret) {
        keys_err(err, err_len, "%s: no '%s:' line", path,
                 have_public ? "secret" : "public");
        return -EBADMSG;
    }
    return 0;
}

/* Invariant 1: the public key must be the secret key's. */
static int keys_check_pair(const char *path, keys *k, char *err,
                           size_t err_len)
{
    char derived[KEYS_Z85_CHARS + 1];
    if (zmq_curve_public(derived, k->secret_z85) != 0) {
        keys_err(err, err_len, "%s: secret key is not a valid CURVE key%s",
                 path, zmq_has("curve") ? "" : " (libzmq lacks CURVE)");
        return zmq_has("curve") ? -EBADMSG : -ENOTSUP;
    }
    if (strcmp(derived, k->public_z85) != 0) {
        keys_err(err, err_len,
                 "%s: public key does not match the secret key", path);
        return -EBADMSG;
    }
    if (!zmq_z85_decode(k->public_binary, k->public_z85)) {
        keys_err(err, err_len, "%s: public key is not valid Z85", path);
        return -EBADMSG;
    }
    return 0;
}

int keys_load(const char *path, keys *k, char *err, size_t err_len)
{
    char text[KEYS_FILE_MAX_BYTES + 1];
    struct stat st;
    size_t len = 0;
    int rc;
    keys parsed;

    keys_err(err, err_len, "%s", "");
    if (!path || !k) {
        keys_err(err, err_len, "no key file given");
        return -EINVAL;
    }
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then
     * refuses it); it changes nothing for a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        keys_err(err, err_len, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        keys_err(err, err_len, "%s: %s", path, strerror(-rc));
        goto close_file;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        keys_err(err, err_len, "%s: not a regular file (%s)", path,
                 S_ISFIFO(st.st_mode)   ? "a FIFO"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                 : S_ISBLK(st.st_mode)  ? "a block device"
                 : S_ISDIR(st.st_mode)  ? "a directory"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "not a file");
        goto close_file;
    }
    if (st.st_size > KEYS_FILE_MAX_BYTES) {
        rc = -EBADMSG;
        keys_err(err, err_len, "%s: %lld bytes, a key file has at most %d",
                 path, (long long)st.st_size, KEYS_FILE_MAX_BYTES);
        goto close_file;
    }
    while (len < sizeof text) {   /* bounded by the buffer size */
        ssize_t n = read(fd, text + len, sizeof text - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            keys_err(err, err_len, "%s: %s", path, strerror(-rc));
            goto wipe_text;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > KEYS_FILE_MAX_BYTES) {   /* grew since fstat */
        rc = -EBADMSG;
        keys_err(err, err_len, "%s: more than %d bytes", path,
                 KEYS_FILE_MAX_BYTES);
        goto wipe_text;
    }
    memset(&parsed, 0, sizeof parsed);
    rc = keys_parse(path, text, len, &parsed, err, err_len);
    if (rc)
        goto wipe_parsed;
    rc = keys_check_pair(path, &parsed, err, err_len);
    if (rc)
        goto wipe_parsed;
    *k = parsed;
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        keys_err(err, err_len,
                 "warning: %s is accessible by group or others (mode %03o); "
                 "chmod 600 it, it holds the cluster secret",
                 path, (unsigned)(st.st_mode & 0777));
wipe_parsed:
    keys_wipe(&parsed, sizeof parsed);
wipe_text:
    keys_wipe(text, sizeof text);
close_file:
    close(fd);
    return rc;
}

/* ------------------------------------------------------ socket options */

static int keys_setopt(void *socket, int option, const void *value,
                       size_t len)
{
    return zmq_setsockopt(socket, option, value, len) == 0 ? 0 : -errno;
}

int keys_set_server(void *socket, const keys *k)
{
    static const char domain[] = "paxosfs";
    int one = 1;
    int rc;
    if (!socket || !k)
        return -EINVAL;
    rc = keys_setopt(socket, ZMQ_CURVE_SERVER, &one, sizeof one);
    if (!rc)
        rc = keys_setopt(socket, ZMQ_CURVE_SECRETKEY, k->secret_z85,
                         KEYS_Z85_CHARS + 1);
    if (!rc)
        rc = keys_setopt(socket, ZMQ_ZAP_DOMAIN, domain, sizeof domain - 1);
    return rc;
}

int keys_set_client(void *socket, const keys *k)
{
    int rc;
    if (!socket || !k)
        return -EINVAL;
    rc = keys_setopt(socket, ZMQ_CURVE_SERVERKEY, k->public_z85,
                     KEYS_Z85_CHARS + 1);
    if (!rc)
        rc = keys_setopt(socket, ZMQ_CURVE_PUBLICKEY, k->public_z85,
                         KEYS_Z85_CHARS + 1);
    if (!rc)
        rc = keys_setopt(socket, ZMQ_CURVE_SECRETKEY, k->secret_z85,
                         KEYS_Z85_CHARS + 1);
    return rc;
}

/*
 * keys.h - the paxosfs cluster key: one CURVE keypair shared by every
 * member of a cluster, its key file, and the socket options that use it.
 *
 * How a cluster authenticates (DESIGN.md: net/ owns peer authentication):
 *   - every node's ROUTER is a CURVE server holding the cluster secret key
 *     (keys_set_server);
 *   - every DEALER is a CURVE client whose own keypair is the cluster
 *     keypair and whose server key is the cluster public key
 *     (keys_set_client);
 *   - the node's ZAP handler (zap.h) admits only clients whose public key
 *     is the cluster public key.  So only holders of the key file can talk
 *     to a node, and every byte between nodes is encrypted.
 *
 * Key file (text, written by `paxosctl keygen`, mode 0600):
 *
 *   # paxosfs cluster key: copy this file to every node, keep it secret
 *   public: <40 Z85 characters>
 *   secret: <40 Z85 characters>
 *
 * Lines starting with '#' and blank lines are ignored; each key line
 * appears exactly once; spaces after the colon and trailing spaces are
 * allowed.
 *
 * Errors: 0 or a negative errno.  keys_load also writes a one-line
 * explanation naming the file into err.
 */
#ifndef PAXOSFS_KEYS_H
#define PAXOSFS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_Z85_CHARS 40    /* a 32-byte CURVE key in Z85 */
#define KEYS_BINARY_BYTES 32
#define KEYS_FILE_MAX_BYTES 4096

typedef struct keys {
    char public_z85[KEYS_Z85_CHARS + 1];   /* NUL-terminated */
    char secret_z85[KEYS_Z85_CHARS + 1];   /* NUL-terminated */
    uint8_t public_binary[KEYS_BINARY_BYTES]; /* as ZAP reports clients */
} keys;

/* Fill *k with a fresh keypair (zmq_curve_keypair).  -ENOTSUP if libzmq
 * was built without CURVE. */
int keys_generate(keys *k);

/* Write *k to `path` as a key file, mode 0600: a temporary file in the
 * same directory, fsynced, then moved into place, then the directory
 * fsynced, so a crash leaves either no file or the whole file.  With
 * overwrite false an existing `path` is left alone and -EEXIST returned;
 * with overwrite true only a regular file is replaced: anything else
 * (a FIFO, a device, a symbolic link, a directory) gives -EINVAL. */
int keys_save(const char *path, const keys *k, bool overwrite);

/* Read and check a key file: format, key lengths, Z85 alphabet, and that
 * the public key is the one derived from the secret key
 * (zmq_curve_public).  On failure returns -ENOENT/-EACCES/... for the
 * file itself, -EINVAL if it is not a regular file (a FIFO or a device is
 * refused at once, never waited on), or -EBADMSG for its contents, with
 * the reason in err.  On success err holds "" or, if the file is
 * accessible by group or others, a warning to print (the call still
 * succeeds: see docs/design.md, "Cluster key"). */
int keys_load(const char *path, keys *k, char *err, size_t err_len);

/* Make a ZeroMQ socket (ROUTER) a CURVE server with the cluster secret
 * key and ZAP domain "paxosfs".  Call before zmq_bind, and open the ZAP
 * handler (zap_open) before any peer can connect: without a handler,
 * libzmq admits every CURVE client.  0 or -errno from zmq_setsockopt. */
int keys_set_server(void *socket, const keys *k);

/* Make a ZeroMQ socket (DEALER) a CURVE client presenting the cluster
 * keypair and expecting the cluster public key from the server.  Call
 * before zmq_connect. */
int keys_set_client(void *socket, const keys *k);

#endif /* PAXOSFS_KEYS_H */

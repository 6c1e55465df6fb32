/*
 * fuzz_keys.c - libFuzzer target for the cluster key file parser
 * (keys_load in net/keys.c), fed through a real file (mode 0600, on tmpfs
 * when there is one) as `paxosfs --key FILE` reads it.
 *
 * Properties (a violation traps):
 *   P1. no out-of-bounds access or undefined behaviour (ASan, UBSan);
 *   P2. a bad file fails with -EBADMSG and a one-line message that names
 *       the file, and leaves the caller's keys alone;
 *   P3. a file that loads holds two 40-character Z85 keys, the public
 *       one derived from the secret one; saved with keys_save and loaded
 *       again it gives the same keys, with no warning.
 */
#include "fuzz_util.h"

#include "../../net/keys.h"

static void check_message(const char *err, const char *path)
{
    CHECK(err[0] != '\0');
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strchr(err, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * KEYS_FILE_MAX_BYTES)
        return 0;
    const char *dir = fuzz_fresh_dir();
    char path[400], saved[400], err[512];
    snprintf(path, sizeof path, "%s/cluster.key", dir);
    snprintf(saved, sizeof saved, "%s/saved.key", dir);
    fuzz_write_file(path, data, size, 0600);

    keys k, untouched;
    memset(&k, 0x5a, sizeof k);
    untouched = k;
    int rc = keys_load(path, &k, err, sizeof err);
    CHECK(rc == 0 || rc == -EBADMSG);
    if (rc) {
        check_message(err, path);
        CHECK(memcmp(&k, &untouched, sizeof k) == 0);
        return 0;
    }
    CHECK(err[0] == '\0');
    CHECK(strlen(k.public_z85) == KEYS_Z85_CHARS);
    CHECK(strlen(k.secret_z85) == KEYS_Z85_CHARS);

    keys again;
    CHECK(keys_save(saved, &k, false) == 0);
    CHECK(keys_load(saved, &again, err, sizeof err) == 0 && err[0] == '\0');
    CHECK(strcmp(again.public_z85, k.public_z85) == 0);
    CHECK(strcmp(again.secret_z85, k.secret_z85) == 0);
    CHECK(memcmp(again.public_binary, k.public_binary,
                 KEYS_BINARY_BYTES) == 0);
    return 0;
}

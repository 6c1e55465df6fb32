/*
 * tmpdir.h - scratch directories for the unit tests that touch files:
 * make_tmpdir creates one under /tmp (malloc'ed path), rm_tree removes it
 * with everything inside and frees the path.
 */
#ifndef PAXOSFS_TEST_TMPDIR_H
#define PAXOSFS_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tmpdir_rm_entry(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline char *make_tmpdir(void)
{
    char *dir = strdup("/tmp/paxosfs-test-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static inline void rm_tree(char *dir)
{
    nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

#endif

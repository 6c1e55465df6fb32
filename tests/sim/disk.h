/*
 * disk.h - the simulator's fake disk: chain/'s file system calls
 * (chain_io.h) served from memory, one volume per simulated node, with
 * the failures a real disk and file system show.
 *
 * Model (per volume):
 *   page cache   what reads see: every write, truncate, create, rename,
 *                unlink and mkdir at once;
 *   disk         what survives a crash: a file's data once an fdatasync
 *                or fsync of it returned, a name once an fsync of its
 *                directory returned (a deferred sync: once the simulator
 *                completes it, fdisk_defer_complete);
 *   pending      everything else, in the order it was done (one journal
 *                per volume).  A crash keeps a random prefix of it; the
 *                operation at the cut may be torn: a write lands in part,
 *                a prefix of its 512-byte sectors.
 * Faults (while a volume's faults are on, from its own seeded generator):
 * EIO or ENOSPC from writes, syncs, truncates and creates, EIO from
 * reads, short writes; at a crash, bit flips in what is on the disk
 * (fdisk_flip), a lost directory, or the whole volume rolled back to a
 * copy (fdisk_save / fdisk_restore).
 *
 * Invariants:
 *   1. Nothing a sync made durable is lost by a crash; nothing that was
 *      never synced survives one except as a prefix of the pending
 *      journal (with at most one torn write at its end).
 *   2. Failures are injected only while faults are on, and every one is
 *      counted by kind (fdisk_counts).
 *   3. Everything follows from the seed given to fdisk_init: the fake
 *      disk reads no clock and calls no rand().
 */
#ifndef PAXOSFS_SIM_DISK_H
#define PAXOSFS_SIM_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FDISK_MAX_VOLS 8
#define FDISK_ROOT "/simfs/n"      /* volume k is FDISK_ROOT "<k>" */

typedef struct fdisk_faults {
    bool on;
    uint32_t fail_ppm;       /* per write, sync, truncate, create */
    uint32_t short_ppm;      /* per write: fewer bytes than asked */
    bool only_syncs;         /* fail_ppm for fdatasync/fsync alone */
} fdisk_faults;

typedef struct fdisk_counts {
    uint64_t eio, enospc, short_writes;
    uint64_t lost_ops;       /* pending operations a crash dropped */
    uint64_t torn;           /* writes a crash tore */
    uint64_t flips;          /* bits flipped */
    uint64_t syncs;          /* fdatasync + fsync calls that succeeded */
} fdisk_counts;

/* Called after a file's fdatasync/fsync or a directory's fsync returned
 * 0: `rel` is the file's current name or the directory's path, relative
 * to the volume ("" for its root). */
typedef void (*fdisk_synced_fn)(void *arg, uint32_t vol, const char *rel);

/* Fresh disk with volumes 1..n_vols (empty root directories, durable),
 * installed as the chain_io table. */
int fdisk_init(uint32_t n_vols, uint64_t seed, fdisk_synced_fn synced,
               void *arg);
/* Uninstall and free everything. */
void fdisk_free(void);

void fdisk_set_faults(uint32_t vol, const fdisk_faults *f);
/* A sick volume (the sickdisk profile): `err` -EIO fails every write,
 * truncate, create, mkdir, rename and sync; -ENOSPC (a full disk) fails
 * writes, truncates, creates and mkdirs; 0 works again.  Reads work.
 * Not counted in fdisk_counts (the simulator counts sick spells). */
void fdisk_set_sick(uint32_t vol, int err);
void fdisk_counts_get(fdisk_counts *c);

/* The volume's root directory ("/simfs/n<k>"). */
const char *fdisk_root(uint32_t vol);

/* A crash of the volume's node: every descriptor must be closed already;
 * the page cache becomes what the disk holds plus a random prefix of the
 * pending journal (invariant 1). */
void fdisk_crash(uint32_t vol);

/* Deferred syncs (the host's fdatasyncs in flight, driven mode): between
 * fdisk_defer_begin and fdisk_defer_end the volume's sync calls fail or
 * succeed at once, but what they cover (the file's or directory's
 * pending operations at the call) becomes durable only at
 * fdisk_defer_complete(ticket), which runs no synced hook; a crash
 * before it keeps them pending (random prefix). */
void fdisk_defer_begin(uint32_t vol, uint32_t ticket);
void fdisk_defer_end(uint32_t vol);
void fdisk_defer_complete(uint32_t vol, uint32_t ticket);

/* How the volume's next crashes choose the prefix (scripted scenarios):
 * FDISK_CRASH_RANDOM (default), _NONE (no pending operation lands),
 * _ALL (every one lands), _TEAR (every one lands but the last write, of
 * which the first sector lands). */
enum { FDISK_CRASH_RANDOM, FDISK_CRASH_NONE, FDISK_CRASH_ALL,
       FDISK_CRASH_TEAR };
void fdisk_set_crash_mode(uint32_t vol, int mode);

/* Flip one bit of a file on the disk: `which` 0 the acceptor log, 1 a
 * chain segment.  The byte is chosen among the file's used bytes.  0 with
 * the file's path (relative) and offset, or -ENOENT when there is none. */
int fdisk_flip(uint32_t vol, int which, char *rel, size_t rel_len,
               uint64_t *offset);
/* The value (0 or 1) of bit `offset` of `rel` on the disk, or -1 when
 * the file or the byte is not there. */
int fdisk_bit(uint32_t vol, const char *rel, uint64_t offset);
/* Put the bit back (an operator restoring the byte from a copy). */
void fdisk_unflip(uint32_t vol, const char *rel, uint64_t offset);

/* Everything under `rel` (a directory) is gone, on disk too. */
void fdisk_remove_tree(uint32_t vol, const char *rel);

/* A copy of what the volume's disk holds now; fdisk_restore puts it
 * back (disk and page cache), as a restore from an older backup. */
void fdisk_save(uint32_t vol);
bool fdisk_restore(uint32_t vol);

/* The page-cache content of a file (NULL when absent); *len its size. */
const uint8_t *fdisk_peek(uint32_t vol, const char *rel, uint64_t *len);

/* Paths (relative) directly inside directory `rel`, sorted, in *out
 * (free the array, not the strings; valid until the volume changes);
 * returns how many. */
uint32_t fdisk_names(uint32_t vol, const char *rel, const char ***out);

#endif

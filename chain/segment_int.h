/*
 * segment_int.h - private to the chain's segment files (segment.c opens
 * and verifies them, segment_rw.c appends, syncs, reads and compacts,
 * record.c owns the block record format): the chain's state and the
 * helpers they share.  segment.c's header comment has the format and the
 * invariants all three keep.
 */
#ifndef PAXOSFS_SEGMENT_INT_H
#define PAXOSFS_SEGMENT_INT_H

#include "chain_int.h"
#include "chain_io.h"

#define REC_MAGIC 0x6b627870u          /* "pxbk" little-endian */
#define REC_VERSION 1
#define REC_HEADER_BYTES 16
#define REC_FIXED_BYTES 108            /* R - L */
#define REC_MAX_BYTES ((uint64_t)REC_FIXED_BYTES + PX_MAX_VALUE_BYTES)
#define SEG_NAME_LEN 28                /* "seg-" 20 digits ".blk" */
#define SEG_MAX_FILES (1u << 20)       /* bound on segments listed */
#define SEG_MAX_FILE_BYTES (1ull << 32) /* larger files are not ours */
#define CHAIN_PATH_MAX 512
_Static_assert(sizeof(((chain_sync_job *)0)->dir) >= CHAIN_PATH_MAX,
               "a sync job holds the chain directory");
#define CHAIN_SEGMENT_MIN_BYTES 256

typedef struct chain_loc {
    uint64_t offset;     /* record start in its segment */
    uint64_t hash8;      /* first 8 bytes of the block hash */
    uint32_t seg;        /* index into chain.segs */
    uint32_t len;        /* record length R */
} chain_loc;

typedef struct chain_seg {
    uint64_t first_index;
    uint64_t n_blocks;
    uint64_t size;       /* bytes of whole records */
} chain_seg;

struct chain {
    char dir[CHAIN_PATH_MAX];          /* DIR/chain */
    bool writable;
    chain_seg *segs;
    uint32_t n_segs, cap_segs;
    uint32_t n_listed;                 /* segment files found on open */
    char parent[CHAIN_PATH_MAX];       /* DIR */
    chain_loc *locs;                   /* locs[i-base-1] for block i */
    uint64_t cap_locs;
    uint64_t base;                     /* blocks 1..base are not held */
    uint8_t base_hash[CHAIN_HASH_BYTES];  /* hash of block base */
    bool base_from_block;              /* base_hash is the first block's
                                          prev_hash (to be read) */
    bool has_snap;                     /* the chain continues a snapshot */
    chain_base snap;
    uint64_t head;
    uint8_t head_hash[CHAIN_HASH_BYTES];
    uint64_t synced;
    uint8_t synced_hash[CHAIN_HASH_BYTES];
    chain_mark mark;                   /* durable position to check */
    uint64_t segment_bytes;
    int active_fd;                     /* last segment */
    int unsynced_fd;                   /* sealed segment not yet synced */
    bool dir_dirty;                    /* a segment name not yet fsync'ed */
    uint64_t rolls;                    /* segments started by appends */
    bool job_active;                   /* a chain_sync_job is out */
    int failed;                        /* sticky write error, 0 = none */
    int read_fd;                       /* cached fd of a sealed segment */
    uint32_t read_seg;
    chain_hasher hasher;
    uint8_t *buf;                      /* record scratch */
    size_t buf_cap;
};

enum rec_status {
    REC_OK = 0,
    REC_SHORT_HEADER,   /* fewer than 16 bytes left */
    REC_BAD_HEADER,     /* magic, version, checksum or length wrong */
    REC_PAST_END,       /* valid header, record longer than what is left */
    REC_BAD_BODY,       /* body checksum or body fields wrong */
};

typedef struct rec_view {
    uint64_t index;
    uint64_t time_ms;
    uint8_t kind;
    uint32_t len;
    uint32_t rec_len;
    const uint8_t *data;
    const uint8_t *prev;
    const uint8_t *hash;
} rec_view;

/* record.c */
int seg_rec_parse(const uint8_t *p, uint64_t avail, rec_view *v,
                  const char **reason);
void seg_rec_encode(uint8_t *p, uint64_t index, uint64_t time_ms,
                    uint8_t kind, const uint8_t *data, uint32_t len,
                    const uint8_t prev[CHAIN_HASH_BYTES],
                    const uint8_t hash[CHAIN_HASH_BYTES]);
uint64_t seg_hash8(const uint8_t *h);

/* segment.c */
int seg_path(const chain *c, uint64_t first_index, char *out, size_t cap);
int seg_buf_reserve(chain *c, size_t need);
int seg_locs_reserve(chain *c, uint64_t need);
int seg_segs_reserve(chain *c, uint32_t need);
int seg_create_segment_file(chain *c, uint64_t first_index, int *fd_out);
void chain_free(chain *c);
int chain_load(const char *dir, const chain_open_opts *o, chain **out,
               chain_open_report *report, chain_damage *damage);

/* segment_rw.c */
int seg_read_record(chain *c, uint64_t index, rec_view *v);

#endif

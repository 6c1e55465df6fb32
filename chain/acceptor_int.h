/*
 * acceptor_int.h - private to the acceptor store (chain.h): the record
 * constants and the store's state, shared by acceptor.c (the store at run
 * time: memory, puts, the write and fdatasync of group commit, compaction
 * and rolling), acceptor_rec.c (the record format, and the rule that
 * tells a torn write from damage) and acceptor_open.c (opening: replay,
 * salvage of a damaged log, offline verification).  The record table and
 * the invariants are at the top of acceptor.c.
 */
#ifndef PAXOSFS_ACCEPTOR_INT_H
#define PAXOSFS_ACCEPTOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain_int.h"
#include "chain_io.h"

#define ACC_MAGIC 0x63617870u     /* "pxac" */
#define ACC_VERSION 1
#define ACC_PROMISE 1
#define ACC_ACCEPT 2
#define ACC_FORGET 3
#define ACC_MARK 4
#define ACC_INCARNATION 5
#define ACC_PEER 6
#define ACC_RECOVERY 7
#define ACC_HEADER_BYTES 16
#define ACC_PROMISE_BYTES 32
#define ACC_ACCEPT_FIXED 56
#define ACC_FORGET_BYTES 28
#define ACC_MARK_BYTES 60
#define ACC_INCARNATION_BYTES 36
#define ACC_PEER_BYTES 44
#define ACC_RECOVERY_BYTES 28
#define ACC_SLACK 64               /* zero bytes always after the records */
#define ACC_SECTOR 512             /* unit a torn write leaves unwritten */
#define ACC_MAX_FILE_BYTES (1ull << 30)
#define ACC_MAX_SLOTS (1u << 20)
#define ACC_MAX_PENDING (256u << 20)
#define ACC_PATH_MAX 512

struct acceptor_store {
    char dir[ACC_PATH_MAX];        /* DIR/acceptor */
    char path[ACC_PATH_MAX];       /* DIR/acceptor/log */
    char tmp_path[ACC_PATH_MAX];   /* DIR/acceptor/log.tmp */
    int fd;
    uint64_t end;                  /* invariant 3 */
    uint64_t capacity;             /* file size (preallocated) */
    uint64_t log_bytes;            /* roll when end exceeds this */
    px_ballot promise;
    px_entry *accepts;             /* ascending slot; data owned */
    uint32_t n_accepts, cap_accepts;
    uint8_t *pending;
    size_t pending_len, pending_cap;
    int failed;
    acceptor_info info;            /* mark, incarnation, peers, recovery */
    char kept_path[ACC_PATH_MAX];  /* DIR/acceptor/log.damaged */
};

typedef struct acc_rec {
    uint8_t type;
    uint32_t rec_len;
    px_ballot ballot;      /* promise, accept */
    px_entry entry;        /* accept (data points into the buffer) */
    uint64_t upto;         /* forget, mark */
    const uint8_t *hash;   /* mark */
    acceptor_peer peer;    /* incarnation (id 0), peer */
    uint64_t state;        /* recovery */
} acc_rec;

enum acc_parse {
    ACC_OK = 0,
    ACC_BAD_SHORT,         /* fewer than a header's bytes left */
    ACC_BAD_HEADER,        /* magic, checksum, version, type or length */
    ACC_BAD_PAST_END,      /* valid header, record longer than the file */
    ACC_BAD_BODY,          /* valid header, body checksum or fields wrong */
};

/* acceptor_rec.c: records (encoders return the record's length; the
 * caller has room for it) */
uint32_t acc_encode_promise(uint8_t *p, px_ballot b);
uint32_t acc_encode_accept(uint8_t *p, const px_entry *e);
uint32_t acc_encode_forget(uint8_t *p, uint64_t upto);
uint32_t acc_encode_mark(uint8_t *p, const chain_mark *m);
uint32_t acc_encode_incarnation(uint8_t *p, uint64_t counter,
                                uint64_t nonce);
uint32_t acc_encode_peer(uint8_t *p, const acceptor_peer *peer);
uint32_t acc_encode_recovery(uint8_t *p, bool recovering);
int acc_rec_parse(const uint8_t *p, uint64_t avail, acc_rec *r,
                  const char **reason);
bool acc_valid_record_after(const uint8_t *p, uint64_t from, uint64_t len);
uint64_t acc_used_end(const uint8_t *p, uint64_t len);
bool acc_looks_torn(const uint8_t *p, uint64_t off, uint64_t size,
                    uint64_t len);

/* acceptor.c: the store's memory and files */
int acc_rec_apply(acceptor_store *a, const acc_rec *r);
void acc_state_out(const acceptor_store *a, acceptor_state *st);
int acc_write_zeros(int fd, uint64_t from, uint64_t to);
int acc_roll_log(acceptor_store *a);

#endif

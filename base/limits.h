/*
 * limits.h - the size policy of paxosfs: every size limit derives from
 * the few chosen here, and the compile-time checks below state how they
 * must relate, so raising one cannot silently break another (a value that
 * fits the filesystem but not an entry, an entry that fits the log but
 * not a frame, a catch-up frame larger than a peer accepts).
 *
 *   name/key  <=  op (key + value + header room)
 *   op + request header + batch header  <=  entry (one slot's value)
 *   entry + entry header  <=  piece of a PROMISE/CATCHUP  <=  frame
 *   catch-up frame from the chain  <=  frame
 *   snapshot chunk + header  <=  frame
 *   frame  =  pieces of LIMIT_WIRE_PART on the socket
 */
#ifndef PAXOSFS_BASE_LIMITS_H
#define PAXOSFS_BASE_LIMITS_H

/* chosen */
#define LIMIT_NAME 255u                 /* bytes of one name (NAME_MAX) */
#define LIMIT_KEY 4096u                 /* bytes of a full key (PATH_MAX) */
#define LIMIT_VALUE (4u << 20)          /* bytes of one key's value */
#define LIMIT_OP_HEADER (8u << 10)      /* room for an op's header, keys
                                           and condition beside its value */
#define LIMIT_ENTRY (8u << 20)          /* bytes of one slot's value */
#define LIMIT_PIECE (4u << 20)          /* entry bytes per PROMISE/CATCHUP
                                           piece (at least one entry) */
#define LIMIT_FRAME (64u << 20)         /* one wire frame, header and body */
#define LIMIT_WIRE_PART (64u << 10)     /* frame bytes per socket message */
#define LIMIT_CATCHUP_FRAME (4u << 20)  /* chain blocks per catch-up frame */
#define LIMIT_SNAPSHOT_CHUNK (16u << 20) /* one snapshot chunk */

/* derived */
#define LIMIT_OP (LIMIT_VALUE + LIMIT_OP_HEADER)
#define LIMIT_REQUEST_HEADER 28u        /* base/entry.c batch record */
#define LIMIT_BATCH_HEADER 4u
#define LIMIT_ENTRY_HEADER 64u          /* wire bytes around one entry */

_Static_assert(LIMIT_NAME <= LIMIT_KEY, "a name fits a key");
_Static_assert(LIMIT_KEY + 64u <= LIMIT_OP_HEADER,
               "an op's header room holds two keys' worth of header");
_Static_assert(LIMIT_OP + LIMIT_REQUEST_HEADER + LIMIT_BATCH_HEADER <=
               LIMIT_ENTRY, "the largest op fits one entry on its own");
_Static_assert(LIMIT_PIECE + LIMIT_ENTRY_HEADER <= LIMIT_FRAME,
               "a piece of entries fits a frame");
_Static_assert(LIMIT_ENTRY + LIMIT_ENTRY_HEADER <= LIMIT_FRAME,
               "a piece always carries at least one whole entry");
_Static_assert(LIMIT_CATCHUP_FRAME + LIMIT_ENTRY + LIMIT_ENTRY_HEADER <=
               LIMIT_FRAME, "a catch-up frame (which may pass its budget "
               "by one entry) fits a frame");
_Static_assert(LIMIT_SNAPSHOT_CHUNK + 4096u <= LIMIT_FRAME,
               "a snapshot chunk fits a frame");
_Static_assert(LIMIT_WIRE_PART <= LIMIT_FRAME && LIMIT_FRAME %
               LIMIT_WIRE_PART == 0, "frames travel in whole parts");

#endif

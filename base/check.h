/*
 * check.h - invariants the code relies on, checked in every build.
 *
 * CHECK(cond): a state that "cannot happen" stops the process at once
 * (abort, so the core dump shows the place) instead of being repaired
 * silently or running on with state nobody vouches for.  It stays on in
 * release builds: unlike assert(), NDEBUG does not remove it.  Use it
 * where a rule is relied on, not for input: bad input gets an error.
 */
#ifndef PAXOSFS_BASE_CHECK_H
#define PAXOSFS_BASE_CHECK_H

#include <stdlib.h>

#ifndef CHECK   /* a test harness may bring its own (the fuzz targets trap) */
#define CHECK(cond) ((cond) ? (void)0 : abort())
#endif

#endif

/*
 * cpus.h - CPU lists and moving a whole process between CPUs.
 *
 * A paxosfs node runs several threads that hand each write to one another:
 * the loop, ZeroMQ's I/O thread, the sync thread.  Waking a thread on
 * another CPU costs tens of microseconds on a virtual machine (an IPI and
 * a VM exit), waking one on the same CPU a few; so when several nodes
 * share a machine, keeping each node's threads together matters
 * (`--leader-cpus`, docs/design.md "CPU placement").
 *
 * Lists are written as the kernel writes them: "0", "0-3", "0,2,4-5".
 */
#ifndef PAXOSFS_CPUS_H
#define PAXOSFS_CPUS_H

#include <sched.h>
#include <stddef.h>

/* Parse a CPU list into *out.  Every CPU must be one this process may run
 * on (sched_getaffinity).  0, or -EINVAL with a sentence in err. */
int cpus_parse(const char *spec, cpu_set_t *out, char *err, size_t err_len);

/* Write a set as a list ("0-2,5"); "" for an empty set.  Returns the
 * length it needed, like snprintf. */
int cpus_format(const cpu_set_t *set, char *out, size_t len);

/* The CPUs this process may run on (the calling thread's mask). */
int cpus_allowed(cpu_set_t *out);

/* Move every thread of this process onto `set`; threads started later
 * inherit the mask of the thread that starts them.  Returns the number of
 * threads moved, or -errno of the first failure (the others are still
 * tried).  A thread that exits meanwhile is not an error. */
int cpus_apply(const cpu_set_t *set);

#endif

/*
 * cpus.c - CPU lists and moving a whole process between CPUs (cpus.h).
 */
#include "cpus.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cpus_allowed(cpu_set_t *out)
{
    CPU_ZERO(out);
    return sched_getaffinity(0, sizeof *out, out) == 0 ? 0 : -errno;
}

/* A decimal CPU number at *p, advancing *p past it. */
static int parse_cpu(const char **p, long *out)
{
    if (!isdigit((unsigned char)**p))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (errno || v < 0 || v >= CPU_SETSIZE)
        return -1;
    *p = end;
    *out = v;
    return 0;
}

int cpus_parse(const char *spec, cpu_set_t *out, char *err, size_t err_len)
{
    cpu_set_t allowed;
    CPU_ZERO(out);
    if (!spec || !*spec) {
        snprintf(err, err_len, "empty CPU list");
        return -EINVAL;
    }
    if (cpus_allowed(&allowed) < 0) {
        snprintf(err, err_len, "cannot read this process's CPUs: %s",
                 strerror(errno));
        return -EINVAL;
    }
    const char *p = spec;
    for (;;) {
        long lo, hi;
        if (parse_cpu(&p, &lo) < 0) {
            snprintf(err, err_len, "bad CPU list '%s': expected a CPU "
                     "number below %d at '%s'", spec, CPU_SETSIZE, p);
            return -EINVAL;
        }
        hi = lo;
        if (*p == '-') {
            p++;
            if (parse_cpu(&p, &hi) < 0 || hi < lo) {
                snprintf(err, err_len, "bad CPU range in '%s'", spec);
                return -EINVAL;
            }
        }
        for (long c = lo; c <= hi; c++) {
            if (!CPU_ISSET(c, &allowed)) {
                char have[256];
                cpus_format(&allowed, have, sizeof have);
                snprintf(err, err_len, "CPU %ld is not available to this "
                         "process (it may use %s)", c, have);
                return -EINVAL;
            }
            CPU_SET(c, out);
        }
        if (*p == '\0')
            return 0;
        if (*p != ',') {
            snprintf(err, err_len, "bad CPU list '%s': unexpected '%c'",
                     spec, *p);
            return -EINVAL;
        }
        p++;
    }
}

int cpus_format(const cpu_set_t *set, char *out, size_t len)
{
    size_t used = 0;
    if (len)
        out[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int end = c;
        while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, set))
            end++;
        char part[32];
        int k = end == c ? snprintf(part, sizeof part, "%s%d",
                                    used ? "," : "", c)
                         : snprintf(part, sizeof part, "%s%d-%d",
                                    used ? "," : "", c, end);
        if (used + (size_t)k < len)
            memcpy(out + used, part, (size_t)k + 1);
        else if (len)
            out[len - 1] = '\0';   /* truncated; the length still counts */
        used += (size_t)k;
        c = end;
    }
    return (int)used;
}

int cpus_apply(const cpu_set_t *set)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    int moved = 0, first_error = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t tid = (pid_t)strtol(de->d_name, NULL, 10);
        if (sched_setaffinity(tid, sizeof *set, set) == 0)
            moved++;
        else if (errno != ESRCH && !first_error)
            first_error = -errno;
    }
    closedir(d);
    return first_error ? first_error : moved;
}

/*
 * clockshift.c - an LD_PRELOAD library for tests: shifts the wall clock
 * (CLOCK_REALTIME and its variants, gettimeofday, time) of a paxosfs
 * process by the number of milliseconds written in the file named by
 * PAXOSFS_CLOCK_SHIFT_FILE, read again at most every 20 ms, so a test can
 * step the clock of running nodes backward and forward without touching
 * the machine's clock.  CLOCK_MONOTONIC is left alone.  Only a process
 * named "paxosfs" is shifted (the test's own interpreter is not).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static const char *shift_file;
static int enabled = -1;
static int64_t shift_ms;
static struct timespec last_read;

static void init(void)
{
    if (enabled >= 0)
        return;
    real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    shift_file = getenv("PAXOSFS_CLOCK_SHIFT_FILE");
    enabled = shift_file && real_clock_gettime &&
              strcmp(program_invocation_short_name, "paxosfs") == 0;
}

static int64_t current_shift(void)
{
    struct timespec now;
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t since = (int64_t)(now.tv_sec - last_read.tv_sec) * 1000 +
                    (now.tv_nsec - last_read.tv_nsec) / 1000000;
    if (last_read.tv_sec == 0 || since >= 20) {
        last_read = now;
        int saved = errno;
        int fd = open(shift_file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char buf[32];
            ssize_t r = read(fd, buf, sizeof buf - 1);
            if (r > 0) {
                buf[r] = '\0';
                shift_ms = strtoll(buf, NULL, 10);
            }
            close(fd);
        }
        errno = saved;
    }
    return shift_ms;
}

static void add_ms(struct timespec *ts, int64_t ms)
{
    int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;
    ts->tv_sec += (time_t)(ms / 1000);
    if (ns < 0) {
        ns += 1000000000;
        ts->tv_sec--;
    } else if (ns >= 1000000000) {
        ns -= 1000000000;
        ts->tv_sec++;
    }
    ts->tv_nsec = (long)ns;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    init();
    if (!real_clock_gettime) {
        errno = ENOSYS;
        return -1;
    }
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && enabled &&
        (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        add_ms(ts, current_shift());
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    tv->tv_sec = ts.tv_sec;    /* glibc declares tv non-null */
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

/*
 * bench.c - owns `build/sim --bench`: committed client operations per CPU
 * second of the whole simulated cluster (3 replicas, their hosts, the
 * virtual network, the kv state machines and the chain hashing), with no
 * faults and zero sync latency, for batch_max_requests = 100 and = 1.
 *
 * Clients keep SIM_BENCH_WINDOW requests each in flight at the leader so
 * batches fill.  CPU time comes from CLOCK_PROCESS_CPUTIME_ID: this is a
 * harness, never part of a replica.
 *
 * Invariants:
 *   1. The bench runs the same code paths as the checked runs, minus the
 *      history recording and the end-of-run linearizability check.
 *   2. A violation during the bench fails it (exit status non-zero).
 */
#include "sim.h"

#include <time.h>

#define SIM_BENCH_CLIENTS 16
#define SIM_BENCH_WINDOW 32

static double sim_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int sim_bench_one(FILE *out, uint32_t batch, uint32_t ops_per_client)
{
    sim_config cfg;
    sim_default_config(&cfg, 1, 3, sim_profile_by_name("bench"));
    cfg.bench = true;
    cfg.clients = SIM_BENCH_CLIENTS;
    cfg.window = SIM_BENCH_WINDOW;
    cfg.ops_per_client = ops_per_client;
    cfg.batch_max_requests = batch;
    cfg.liveness_bound_ms = 600000;   /* virtual ms: only a lost request */
    sim_stats st = {0};
    double t0 = sim_cpu_s();
    int rc = sim_run(&cfg, &st, out);
    double cpu = sim_cpu_s() - t0;
    fprintf(out, "sim-bench: batch=%u ops=%llu cpu_s=%.3f ops_per_cpu_s=%.0f "
            "steps=%llu msgs=%llu%s\n", batch,
            (unsigned long long)st.ops_done, cpu,
            cpu > 0 ? (double)st.ops_done / cpu : 0.0,
            (unsigned long long)st.steps, (unsigned long long)st.msgs,
            rc ? " FAILED" : "");
    return rc;
}

int sim_bench(FILE *out)
{
    int rc = sim_bench_one(out, 100, 40000);
    if (sim_bench_one(out, 1, 5000) != 0)
        rc = 1;
    return rc;
}

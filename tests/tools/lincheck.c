/*
 * lincheck - check a recorded key-value history for linearizability with
 * the simulator's checker (tests/sim/lincheck.c).  Used by the cluster
 * system tests, which record every operation on real mounts.
 *
 *   lincheck [--budget STEPS] FILE
 *
 * One operation per line, fields separated by single spaces:
 *   KEY PUT|APPEND INVOKE RETURN RESULT HEXVALUE
 *   KEY DEL INVOKE RETURN RESULT -
 *   KEY GET INVOKE RETURN found HEXVALUE | KEY GET INVOKE RETURN missing -
 * KEY is a number; INVOKE and RETURN are integers on one clock (RETURN is
 * "pending" for an operation whose outcome is unknown); RESULT is 0 or a
 * negative errno; HEXVALUE is the value in hex ("-" when empty).
 *
 * --budget bounds the search per key (default 1,000,000 steps; beyond it
 * the verdict is "undecided").
 *
 * Exit status: 0 linearizable, 1 violation, 2 undecided or bad input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/lincheck.h"

static int unhex(const char *s, uint8_t **out, uint32_t *len)
{
    *out = NULL;
    *len = 0;
    if (strcmp(s, "-") == 0)
        return 0;
    size_t n = strlen(s);
    if (n % 2)
        return -EINVAL;
    uint8_t *b = malloc(n / 2 + 1);
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            free(b);
            return -EINVAL;
        }
        b[i] = (uint8_t)v;
    }
    *out = b;
    *len = (uint32_t)(n / 2);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t budget = 0;
    if (argc == 4 && strcmp(argv[1], "--budget") == 0) {
        budget = strtoull(argv[2], NULL, 10);
        argv += 2;
        argc -= 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: lincheck [--budget STEPS] FILE\n");
        return 2;
    }
    FILE *fp = fopen(argv[1], "r");
    if (!fp) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1024, n = 0;
    lin_op *ops = calloc(cap, sizeof *ops);
    char line[4 * 1024 * 1024 / 64];
    int status = 0;
    unsigned lineno = 0;
    while (ops && fgets(line, sizeof line, fp)) {
        lineno++;
        char type[16], ret[32], res[32], val[sizeof line];
        unsigned long key;
        unsigned long long invoke;
        if (sscanf(line, "%lu %15s %llu %31s %31s %s", &key, type, &invoke, ret,
                   res, val) != 6) {
            fprintf(stderr, "lincheck: line %u: malformed\n", lineno);
            status = 2;
            break;
        }
        if (n == cap) {
            lin_op *more = realloc(ops, 2 * cap * sizeof *ops);
            if (!more) {
                status = 2;
                break;
            }
            ops = more;
            cap *= 2;
        }
        lin_op *op = &ops[n];
        memset(op, 0, sizeof *op);
        op->key = (uint32_t)key;
        op->invoke_ms = invoke;
        op->return_ms = strcmp(ret, "pending") == 0 ? LIN_RETURN_PENDING
                                                     : strtoull(ret, NULL, 10);
        uint8_t *bytes;
        uint32_t len;
        if (unhex(val, &bytes, &len) < 0) {
            fprintf(stderr, "lincheck: line %u: bad value\n", lineno);
            status = 2;
            break;
        }
        if (strcmp(type, "GET") == 0) {
            op->type = LIN_GET;
            op->found = strcmp(res, "found") == 0;
            op->output = bytes;
            op->output_len = len;
        } else {
            op->type = strcmp(type, "PUT") == 0 ? LIN_PUT
                     : strcmp(type, "APPEND") == 0 ? LIN_APPEND
                     : strcmp(type, "DEL") == 0 ? LIN_DEL : 0;
            op->result = (int32_t)strtol(res, NULL, 10);
            op->input = bytes;
            op->input_len = len;
        }
        n++;
    }
    fclose(fp);
    if (!ops) {
        fprintf(stderr, "lincheck: out of memory\n");
        return 2;
    }
    if (status == 0) {
        lin_report rep;
        int v = lin_check(ops, n, budget, &rep);
        if (v < 0) {
            fprintf(stderr, "lincheck: %s\n", strerror(-v));
            status = 2;
        } else {
            printf("lincheck: %zu operations on %u keys: %s (%llu steps)\n", n,
                   rep.keys, lin_verdict_name(v), (unsigned long long)rep.steps);
            if (v != LIN_OK)
                printf("lincheck: first bad key %u\n", rep.bad_key);
            status = v == LIN_OK ? 0 : v == LIN_VIOLATION ? 1 : 2;
        }
    }
    for (size_t i = 0; i < n; i++) {
        free((void *)ops[i].input);
        free((void *)ops[i].output);
    }
    free(ops);
    return status;
}

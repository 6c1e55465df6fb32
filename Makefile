# paxosfs build.  `make` builds build/paxosfs and build/paxosctl;
# `make test` runs every test; `make asan` runs them under ASan+UBSan;
# `make sim SEEDS=N` runs the simulator; `make bench` prints benchmarks
# (text, data and a PNG also go to build/bench/results/<time>/);
# `make bench-large` measures writes while nodes catch up on 1M keys;
# `make fsx N=...` runs the random file-operation exerciser for N ops;
# `make conformance` runs the filesystem's expectation table;
# `make deps` installs the Debian packages the build and tests need.

CC       ?= cc
OPT      ?= -O2 -g
WARN     ?= -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wpointer-arith -Wformat=2
CSTD     := -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
SANITIZE ?=
BUILD    ?= build
SEEDS    ?= 1000

FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS   := $(shell pkg-config --libs fuse3 2>/dev/null)
ZMQ_LIBS    := -lzmq
CRYPTO_LIBS := -lcrypto
Z_LIBS      := -lz

CFLAGS   := $(OPT) $(WARN) $(CSTD) $(SANITIZE) -MMD -MP $(FUSE_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  := $(SANITIZE) $(EXTRA_LDFLAGS)

# --- module libraries: one per folder -------------------------------------
BASE_SRC      := $(wildcard base/*.c)
CONSENSUS_SRC := $(wildcard consensus/*.c)
CHAIN_SRC     := $(wildcard chain/*.c)
NET_SRC       := $(wildcard net/*.c)
NODE_SRC      := $(wildcard node/*.c)
FS_SRC        := $(wildcard fs/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_BASE      := $(BUILD)/libbase.a
LIB_CONSENSUS := $(BUILD)/libpx.a
LIB_CHAIN     := $(BUILD)/libchain.a
LIB_NET       := $(BUILD)/libnet.a
LIB_NODE      := $(BUILD)/libnode.a
LIB_FS        := $(BUILD)/libfs.a

# link sets, most dependent first: the order states the layering
# (docs/design.md "Layers"): chain/ and consensus/ both sit on base/ and
# neither on the other; net/ carries the core's messages; node/ runs it all.
LINK_CONSENSUS := $(LIB_CONSENSUS) $(LIB_BASE)
LINK_CHAIN     := $(LIB_CHAIN) $(LIB_BASE) $(CRYPTO_LIBS) $(Z_LIBS) -lpthread
LINK_NET       := $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE) $(CRYPTO_LIBS) $(Z_LIBS) $(ZMQ_LIBS) -lpthread
LINK_ALL       := $(LIB_NODE) $(LIB_FS) $(LINK_NET) $(FUSE_LIBS)
# the simulator runs the production state-machine host (node/host.c,
# host_open.c,
# node/commit.c and what they use of net/: syncer, worker, outbox)
LINK_SIM       := $(LIB_NODE) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE) $(CRYPTO_LIBS) $(Z_LIBS) -lpthread

PROGRAMS := $(BUILD)/paxosfs $(BUILD)/paxosctl $(BUILD)/lincheck $(BUILD)/clockshift.so

# --- tests -----------------------------------------------------------------
# tests/unit/test_<module>_*.c links against <module> and what it uses.
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
SIM_SRC   := $(wildcard tests/sim/*.c)
SIM_BIN   := $(BUILD)/sim
BENCH_SRC := $(wildcard tools/bench/*.c)
BENCH_BINS:= $(patsubst tools/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all test unit sim systest asan bench bench-large deps clean fuzz fuzz-one fuzz-run fuzz-corpus run stop fsx mutants conformance
# keep objects: they are not intermediate files to delete after a link
.SECONDARY:


all: $(PROGRAMS) $(UNIT_BINS) $(SIM_BIN) $(BENCH_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_BASE): $(call obj,$(BASE_SRC))
$(LIB_CONSENSUS): $(call obj,$(CONSENSUS_SRC))
$(LIB_CHAIN): $(call obj,$(CHAIN_SRC))
$(LIB_NET): $(call obj,$(NET_SRC))
$(LIB_NODE): $(call obj,$(NODE_SRC))
$(LIB_FS): $(call obj,$(FS_SRC))
$(BUILD)/lib%.a:
	@mkdir -p $(dir $@)
	rm -f $@
	$(if $^,ar rcs $@ $^,ar rcs $@)

$(BUILD)/paxosfs: $(call obj,tools/paxosfs.c) $(LIB_NODE) $(LIB_FS) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_ALL)

$(BUILD)/paxosctl: $(call obj,tools/paxosctl.c) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_NET)

# the replica tests fail allocations inside px_step (test_failing_allocations)
$(BUILD)/tests/test_consensus_replica $(BUILD)/tests/test_consensus_members: LDFLAGS += -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc
$(BUILD)/tests/test_consensus%: $(call obj,tests/unit/test_consensus%.c) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_CONSENSUS) -lcmocka

$(BUILD)/tests/test_chain%: $(call obj,tests/unit/test_chain%.c) $(LIB_CHAIN) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_CHAIN) -lcmocka

$(BUILD)/tests/test_net%: $(call obj,tests/unit/test_net%.c) $(LIB_NODE) $(LIB_NET) $(LIB_FS) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_ALL) -lcmocka

$(BUILD)/tests/test_node%: $(call obj,tests/unit/test_node%.c) $(LIB_NODE) $(LIB_NET) $(LIB_FS) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_ALL) -lcmocka

$(BUILD)/tests/test_fs%: $(call obj,tests/unit/test_fs%.c) $(LIB_NODE) $(LIB_FS) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_ALL) -lcmocka

# test helper: LD_PRELOAD library that steps a node's wall clock
$(BUILD)/clockshift.so: tests/tools/clockshift.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) -std=c11 -fPIC -shared -o $@ $< -ldl

$(BUILD)/lincheck: $(call obj,tests/tools/lincheck.c tests/sim/lincheck.c)
	$(CC) $(LDFLAGS) -o $@ $^

$(SIM_BIN): $(call obj,$(SIM_SRC)) $(LIB_NODE) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_SIM)

# the benchmark's baseline filesystem stands alone: libfuse3 only
$(BUILD)/bench/memfs: $(call obj,tools/bench/memfs.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FUSE_LIBS) -lpthread

$(BUILD)/bench/%: $(call obj,tools/bench/%.c) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_NET)

# --- running ---------------------------------------------------------------
unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# the scenarios, the named regressions, then SEEDS random seeds on
# SIM_JOBS processes
SIM_JOBS ?= 2
sim: $(SIM_BIN)
	$(SIM_BIN) --seeds $(SEEDS) --jobs $(SIM_JOBS)

systest: $(PROGRAMS)
	PAXOSFS_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/system

test: all
	$(MAKE) unit
	$(MAKE) fuzz
	$(MAKE) sim
	$(MAKE) systest

# `make fsx N=... SEED=S` (or OPS=N): the random-operation exerciser
# (tests/tools/fsx.py) on one mount and across a 3-node cluster, N
# operations (make test: 1200)
N    ?= 1200
OPS  ?= $(N)
SEED ?= 1
fsx: $(PROGRAMS)
	PAXOSFS_BUILD=$(abspath $(BUILD)) FSX_OPS=$(OPS) FSX_SEED=$(SEED) \
	    /usr/bin/python3 -m pytest -q tests/system/test_fsx.py

# `make conformance`: the expectation table (tests/conformance/table.txt)
# against a fresh node's mount (make test runs it with the system tests)
conformance: $(PROGRAMS)
	PAXOSFS_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q \
	    tests/system/test_fs_conformance.py

ASAN_MAKE := $(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
    SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=all"

asan:
	$(ASAN_MAKE) all
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_MAKE) unit
	ASAN_OPTIONS=detect_leaks=1 $(ASAN_MAKE) sim SEEDS=200
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_MAKE) systest

# each core-rule mutant applied to a scratch copy of HEAD: caught or missed
mutants:
	tests/mutants/run

bench: all
	tools/bench/run $(abspath $(BUILD))

# `make bench-large`: write latency while a new learner and a wiped
# follower catch up on BENCH_KEYS keys (tools/bench/catchup; several
# minutes, so not part of `make bench`)
BENCH_KEYS ?= 1000000
bench-large: all
	tools/bench/catchup $(abspath $(BUILD)) $(BENCH_KEYS)

deps:
	tools/install-deps

# --- fuzzing ----------------------------------------------------------------
# `make fuzz` builds one libFuzzer target per decoder of outside input
# (clang, -fsanitize=fuzzer,address,undefined) into build-fuzz and runs each
# for a fixed number of inputs from its checked-in seeds in
# tests/fuzz/corpus/<name>, with a fixed seed; inputs it finds go to a
# scratch corpus that is emptied first, so a run is reproducible.  Exit 0 =
# nothing found.  FUZZ_SCALE multiplies every run count (FUZZ_SCALE=10 for a
# longer search); `make fuzz-one FUZZ_TARGET=segment` runs one target.
# The seeds are written by tests/fuzz/gen_corpus.c: `make fuzz-corpus`.
#   wire      net/wire.c, net/wire_frames.c frames from peers
#   segment   chain segment files, verified and opened as on start-up
#   acceptor  the acceptor log, replayed as on start-up
#   batch     a BATCH block's value: batch iterator, renderer, state machine
#   kv_op     one key-value op
#   members   a CONFIG block's value (membership)
#   snapshot  key-value snapshots and the session table inside them
#   snapfile  snapshot files and transfers: the chunk receiver and its checks
#   keys      the cluster key file (--key)
FUZZ_CC    ?= clang
FUZZ_RUNS  ?= 200000
FUZZ_SCALE ?= 1
FUZZ_BUILD := build-fuzz
FUZZ_BASE  := -g -O1 -fno-omit-frame-pointer $(CSTD) $(WARN) \
              -fno-sanitize-recover=all
FUZZ_FLAGS := $(FUZZ_BASE) -fsanitize=fuzzer,address,undefined
# objects linked into a fuzz target: coverage and sanitizers, no main
FUZZ_OBJ_FLAGS := $(FUZZ_BASE) -fsanitize=fuzzer-no-link,address,undefined \
                  -MMD -MP
FUZZ_TARGETS := wire segment acceptor batch kv_op members snapshot snapfile keys \
                wire_mount
# inputs per target (times FUZZ_SCALE) and the largest input, sized so that
# the whole `make fuzz` takes well under a minute on two cores
FUZZ_RUNS_wire     = $(FUZZ_RUNS)
FUZZ_RUNS_segment  = 6000
FUZZ_RUNS_acceptor = 8000
FUZZ_RUNS_batch    = 40000
FUZZ_RUNS_kv_op    = 100000
FUZZ_RUNS_members  = 100000
FUZZ_RUNS_snapshot = 20000
FUZZ_RUNS_snapfile = 6000
FUZZ_RUNS_keys     = 8000
FUZZ_RUNS_wire_mount = 100000
FUZZ_LEN_wire      = 4096
FUZZ_LEN_segment   = 8192
FUZZ_LEN_acceptor  = 8192
FUZZ_LEN_batch     = 8192
FUZZ_LEN_kv_op     = 4096
FUZZ_LEN_members   = 512
FUZZ_LEN_snapshot  = 8192
FUZZ_LEN_snapfile  = 16384
FUZZ_LEN_keys      = 4096
FUZZ_LEN_wire_mount = 1024

FUZZ_CHAIN_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(CHAIN_SRC) $(CONSENSUS_SRC) $(BASE_SRC))
FUZZ_LINK_CHAIN := $(FUZZ_CHAIN_OBJS) $(CRYPTO_LIBS) $(Z_LIBS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_FLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_wire: tests/fuzz/fuzz_wire.c net/wire.c net/wire_frames.c net/wire.h net/wire_int.h consensus/px.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_wire.c net/wire.c net/wire_frames.c

$(FUZZ_BUILD)/fuzz_wire_mount: tests/fuzz/fuzz_wire_mount.c net/wire.c net/wire_mount.c net/wire_mount.h net/wire.h net/wire_int.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_wire_mount.c net/wire.c net/wire_mount.c

$(FUZZ_BUILD)/fuzz_keys: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_keys.o $(FUZZ_BUILD)/obj/net/keys.o
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ $(ZMQ_LIBS)

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_CHAIN_OBJS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LINK_CHAIN)

fuzz: $(foreach t,$(FUZZ_TARGETS),$(FUZZ_BUILD)/fuzz_$(t))
	@set -e; for t in $(FUZZ_TARGETS); do \
	    $(MAKE) --no-print-directory fuzz-run FUZZ_TARGET=$$t; done

fuzz-one: $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET)
	$(MAKE) --no-print-directory fuzz-run FUZZ_TARGET=$(FUZZ_TARGET)

fuzz-run:
	@echo "== fuzz_$(FUZZ_TARGET): $$(( $(FUZZ_RUNS_$(FUZZ_TARGET)) * $(FUZZ_SCALE) )) runs"
	@rm -rf $(FUZZ_BUILD)/corpus-$(FUZZ_TARGET) && mkdir -p $(FUZZ_BUILD)/corpus-$(FUZZ_TARGET)
	$(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET) -runs=$$(( $(FUZZ_RUNS_$(FUZZ_TARGET)) * $(FUZZ_SCALE) )) \
	    -seed=1 -max_len=$(FUZZ_LEN_$(FUZZ_TARGET)) -artifact_prefix=$(FUZZ_BUILD)/  \
	    $(FUZZ_BUILD)/corpus-$(FUZZ_TARGET) tests/fuzz/corpus/$(FUZZ_TARGET) \
	    2>$(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET).log || \
	    { tail -n 60 $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET).log; exit 1; }
	@tail -n 1 $(FUZZ_BUILD)/fuzz_$(FUZZ_TARGET).log

# the seed corpora, regenerated from the real encoders
$(BUILD)/gen_corpus: $(call obj,tests/fuzz/gen_corpus.c) $(LIB_NET) $(LIB_CHAIN) $(LIB_CONSENSUS) $(LIB_BASE)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_NET)

fuzz-corpus: $(BUILD)/gen_corpus
	$(BUILD)/gen_corpus tests/fuzz/corpus

# the main job: a local 3-node cluster, each node with its own mount
CLUSTER ?= /var/tmp/paxosfs
NODES   ?= 3
run: $(PROGRAMS)
	tools/cluster up $(CLUSTER) $(NODES) --bin $(abspath $(BUILD))

stop:
	tools/cluster down $(CLUSTER)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) build-asan $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

"""A real paxosfs cluster: three processes on loopback, each with its own
mount and backing directory, replicating over ZeroMQ.

The cluster is run the way users run one, with the launcher tools/cluster:
`up` starts it, `kill`/`start`/`pause`/`resume`/`faillink`/`fixlink` inject
faults, `leader` names the leader, `status` shows the nodes, and `down`
stops it at teardown (see conftest.launched).  Reads and writes are plain
file I/O on the mounts."""
import errno
import os
import random
import subprocess
import threading
import time

import pytest

from conftest import (MountClient, SUSPICIOUS, call_with_deadline, cpu_list, pid_alive,
                      read_file, wait_for, write_file)


@pytest.fixture
def cluster(launched):
    """Factory: cluster(extra=PAXOSFS_ARGS) is `tools/cluster up DIR 3 --
    PAXOSFS_ARGS`, brought down with `tools/cluster down DIR` at teardown."""
    return launched


def all_heads_equal(c, ids=(1, 2, 3)):
    """Every node in ids answers .status and holds the same block at the
    lowest chain head among them (which is past the genesis)."""
    heads = [c.node(k).status_within() for k in ids]
    if any(h is None for h in heads):
        return False
    idx = min(h["chain_head"]["index"] for h in heads)
    if idx == 0:
        return False
    hashes = set()
    for k in ids:
        text = call_with_deadline(
            lambda k=k: read_file(c.node(k).path(".chain/%010d" % idx)))
        if text is None:
            return False
        hashes.add([l for l in text.splitlines() if l.startswith("hash: ")][0])
    return len(hashes) == 1 and heads


def test_write_on_one_node_read_on_the_others(cluster):
    c = cluster()
    write_file(c.node(1).path("shared"), "from node 1\n")
    assert read_file(c.node(2).path("shared")) == "from node 1\n"
    assert read_file(c.node(3).path("shared")) == "from node 1\n"
    write_file(c.node(3).path("shared"), "from node 3\n")
    assert read_file(c.node(1).path("shared")) == "from node 3\n"
    assert sorted(os.listdir(c.node(2).mnt)) == [".chain", ".cluster", ".status", "shared"]


def test_removal_on_one_node_is_seen_at_once_on_the_others(cluster):
    """A removal committed elsewhere is never hidden: an open() that starts
    after unlink() returned fails with ENOENT on every mount, and a new
    file of the same name is a new file (with kernel name caches too:
    test_fs_semantics.py)."""
    c = cluster()
    for round in range(3):
        write_file(c.node(1).path("gone"), "v%d\n" % round)
        # cache the name on every mount
        assert read_file(c.node(2).path("gone")) == "v%d\n" % round
        assert read_file(c.node(3).path("gone")) == "v%d\n" % round
        remover = c.node(1 + round % 3)
        os.unlink(remover.path("gone"))
        for k in (1, 2, 3):
            with pytest.raises(FileNotFoundError):
                read_file(c.node(k).path("gone"))
    write_file(c.node(2).path("gone"), "again\n")
    assert read_file(c.node(3).path("gone")) == "again\n"


def test_every_read_path_sees_the_last_change_on_any_mount(cluster):
    """Reads are linearizable on every path and mount, read lease or not
    (consensus/reads.c): a create, overwrite or unlink that returned on one
    mount is seen at once by lookup, stat, open, read and readdir on every
    other, leader's and followers' alike."""
    c = cluster()
    mounts = [c.node(k) for k in (1, 2, 3)]
    for i in range(60):
        a, b, d = mounts[i % 3], mounts[(i + 1) % 3], mounts[(i + 2) % 3]
        name = "lin%d" % (i % 7)
        body = "v%d\n" % i
        write_file(a.path(name), body)
        for m in (b, d):
            assert os.stat(m.path(name)).st_size == len(body)
            assert read_file(m.path(name)) == body
            assert name in os.listdir(m.mnt)
        os.unlink(b.path(name))
        for m in (a, d):
            with pytest.raises(FileNotFoundError):
                os.stat(m.path(name))
            assert name not in os.listdir(m.mnt)
        write_file(d.path(name), "again%d\n" % i)
        assert read_file(a.path(name)) == "again%d\n" % i


def test_many_creators_on_the_leader_are_seen_at_once_everywhere(cluster):
    """The leader answers lookups between two FUSE requests while its read
    lease holds (node/loop.c node_between) instead of at the end of its
    turn: with 16 threads creating new names in one directory on the
    leader's mount, a name is absent on every mount until its creator's
    close() returns and present on every mount once it has."""
    c = cluster()
    leader = wait_for(lambda: c.leader(), 30, "a leader")
    others = [c.node(k) for k in (1, 2, 3) if k != leader]
    lead = c.node(leader)
    before = lead.status()["reads_between_requests"]
    errors = []

    def creator(t):
        try:
            for i in range(25):
                name = "c%d-%d" % (t, i)
                for m in others + [lead]:
                    with pytest.raises(FileNotFoundError):
                        os.stat(m.path(name))
                write_file(lead.path(name), "%d\n" % i)
                for m in others + [lead]:
                    assert read_file(m.path(name)) == "%d\n" % i
        except BaseException as e:   # reported below, on the test's thread
            errors.append(e)

    threads = [threading.Thread(target=creator, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors[0]
    assert len([n for n in os.listdir(others[0].mnt) if n.startswith("c")]) == 400
    # the path under test ran (unless the lease lapsed the whole time)
    assert lead.status()["reads_between_requests"] > before


def test_a_negative_lookup_is_answered_where_it_was_read(cluster):
    """A LOOKUP of a missing name reads the name at a read point, then the
    directory key on the state applied since (fs/names.c).  Both are
    answered between two requests of the mount (node/loop.c
    node_between), on the leader's mount under its lease and on a
    follower's under a follower lease: the second read does not wait for
    the mount's next request or the end of the turn while the kernel
    holds the directory's lock.  Fails when node_between stops after the
    first reads."""
    c = cluster()
    leader = wait_for(lambda: c.leader(), 30, "a leader")
    follower = 1 if leader != 1 else 2
    write_file(c.node(leader).path("warm"), "w\n")   # leases granted
    for k in (leader, follower):
        m = c.node(k)
        wait_for(lambda: os.path.exists(m.path("warm")), 10, "the key")
        before = m.status()["chained_reads_between"]
        for i in range(20):
            with pytest.raises(FileNotFoundError):
                os.stat(m.path("missing-%d-%d" % (k, i)))
        # each lookup chains one read; a lapsed lease (a busy machine)
        # sends some to the end of the turn instead
        assert m.status()["chained_reads_between"] - before >= 10, k


def test_a_cluster_paused_together_keeps_its_leader(cluster):
    """Every daemon of the cluster stopped for 1.5 s at once (a machine
    loaded by another program, a paused VM), then continued: nobody heard
    anybody meanwhile, and that is not a dead leader (consensus/replica.c
    invariant 5).  The same leader keeps its ballot, no node starts an
    election, and writes through a follower go on.  Without the stall
    check the leader steps down on its first tick for want of quorum
    contact and the followers campaign."""
    import signal
    c = cluster()
    leader = wait_for(lambda: c.leader(), 30, "a leader")
    follower = 1 if leader != 1 else 2
    write_file(c.node(follower).path("before"), "b\n")
    st = {k: c.node(k).status() for k in (1, 2, 3)}
    pids = [c.node(k).pid for k in (1, 2, 3)]
    try:
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        time.sleep(1.5)         # the fault itself: how long nothing runs
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    # every node noticed it had not run, and went on writing for a while
    for k in (1, 2, 3):
        wait_for(lambda: c.node(k).status()["stalled_ms"] >=
                 st[k]["stalled_ms"] + 1000, 10, "node %d's stall" % k)
    deadline = time.monotonic() + 1.5   # longer than an election takes
    i = 0
    while time.monotonic() < deadline:
        write_file(c.node(follower).path("after-%d" % i), "%d\n" % i)
        i += 1
    for k in (1, 2, 3):
        now = c.node(k).status()
        assert now["leader"] == leader, (k, now["leader"])
        assert now["ballot"] == st[leader]["ballot"], (k, now["ballot"])
        assert now["elections_started"] == st[k]["elections_started"], k
    assert read_file(c.node(leader).path("after-%d" % (i - 1))) == "%d\n" % (i - 1)


def test_status_shows_peers(cluster):
    c = cluster()
    leader = c.wait_leader()
    write_file(c.node(1).path("k"), "v")
    st = c.node(leader).status()
    assert st["role"] == "leader" and st["leader"] == leader
    peers = {p["id"]: p for p in st["peers"]}
    assert sorted(peers) == sorted(i for i in (1, 2, 3) if i != leader)
    wait_for(lambda: all(p["connected"] for p in c.node(leader).status()["peers"]),
             10, "peers connected")
    wait_for(lambda: all(p["match_index"] >= st["commit_index"]
                         for p in c.node(leader).status()["peers"]), 10, "match index")
    # the launcher's view agrees: three live nodes, one leader named by all
    rows = [line.split() for line in c.ok("status").stdout.splitlines()[1:]]
    assert [row[:3] for row in rows] == [[str(k), str(c.node(k).pid), "alive"]
                                         for k in (1, 2, 3)]
    assert [row[3] for row in rows] == ["leader" if k == leader else "follower"
                                        for k in (1, 2, 3)]
    assert [row[4] for row in rows] == [str(leader)] * 3


def test_leader_failover_loses_no_acknowledged_write(cluster):
    c = cluster()
    leader = c.wait_leader()
    others = [n for n in c.nodes if n.id != leader]
    acked, lock, stop = {}, threading.Lock(), threading.Event()
    errors = []

    def writer(n, w):
        mount = MountClient(n)
        i = 0
        while not stop.is_set():
            key = "w%d-%d" % (w, i % 20)
            try:
                mount.write(key, b"%d" % i)
            except OSError as e:
                errors.append(e.errno)
                stop.wait(0.01)
                continue
            with lock:
                acked[key] = i
            i += 1
        mount.close()

    threads = [threading.Thread(target=writer, args=(others[w % 2], w)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 40, 60, "writes before the kill")
        before = sum(acked.values())
        survivors = [n.id for n in others]
        started = time.monotonic()
        c.kill(leader)
        killed_at = time.monotonic()
        # timed on the survivors' own .status (polled in-process, finer than
        # `tools/cluster leader`), then confirmed by the launcher's strict
        # rule: every live node names the new leader, the dead one is ignored
        seen = wait_for(lambda: c.views_leader(survivors, exclude=(leader,)), 30,
                        "the survivors to name a new leader")
        elapsed = time.monotonic() - killed_at
        new_leader = c.wait_leader(among=survivors, exclude=(leader,))
        print("\nnew leader %d elected %.3f s after `tools/cluster kill %d` returned "
              "(the kill took %.3f s); tools/cluster leader agrees: %d"
              % (seen, elapsed, leader, killed_at - started, new_leader))
        wait_for(lambda: sum(acked.values()) > before + 40, 60, "writes after failover")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert new_leader != leader
    for key, i in acked.items():
        for n in others:
            assert int(read_file(n.path(key))) >= i, (key, n.id)


def thread_cpus(pid):
    """The CPU set of every thread of pid, as a list of sets."""
    sets = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    sets.append(cpu_list(line.split()[1]))
    return sets


def test_leader_gets_a_cpu_of_its_own(cluster):
    """tools/cluster up --pin passes --leader-cpus LOWEST: every thread of
    the leader runs on that CPU, every thread of the others off it, and a
    new leader moves there when the old one dies."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("needs 2 CPUs")
    lowest = min(allowed)
    c = cluster(launcher_args=("--pin",))

    def placed(ids, leader):
        for k in ids:
            want = {lowest} if k == leader else allowed - {lowest}
            st = c.node(k).status_within()
            if not st or cpu_list(st["cpus"]) != want or st["leader_cpus"] != str(lowest):
                return False
            if any(s != want for s in thread_cpus(c.node(k).pid)):
                return False
        return True

    leader = c.wait_leader()
    wait_for(lambda: placed((1, 2, 3), leader), 10, "the leader alone on CPU %d" % lowest)
    argv = c.record(leader)["argv"]
    assert argv[argv.index("--leader-cpus") + 1] == str(lowest)
    c.kill(leader)
    survivors = [k for k in (1, 2, 3) if k != leader]
    new_leader = c.wait_leader(among=survivors, exclude=(leader,))
    wait_for(lambda: placed(survivors, new_leader), 10,
             "the new leader %d moved to CPU %d" % (new_leader, lowest))
    write_file(c.node(new_leader).path("k"), "placed\n")
    assert read_file(c.node(survivors[0]).path("k")) == "placed\n"


def test_losing_either_follower_keeps_writes_flowing(cluster):
    """Thrifty phase 2 sends each batch at once to one follower only; if
    that one dies, the other gets the batch at the next lazy fill (a
    heartbeat interval) or, after a quiet spell, by the re-send of a
    follower that made no progress for retry_interval_ms, answers and
    takes its place.  Either follower may die: every write still commits,
    none waits long, nothing is lost, and the restarted follower catches
    up."""
    c = cluster()
    leader = c.wait_leader()
    followers = [k for k in (1, 2, 3) if k != leader]
    # existing keys: creating one needs a read round, which would bring
    # the skipped follower up to date on its own
    for i in range(30):
        write_file(c.node(leader).path("k%d" % i), "-\n")
    for victim in followers:
        c.kill(victim)
        slowest = 0.0
        for i in range(30):
            t0 = time.monotonic()
            write_file(c.node(leader).path("k%d" % i), "%d-%d\n" % (victim, i))
            slowest = max(slowest, time.monotonic() - t0)
        survivor = next(k for k in followers if k != victim)
        assert read_file(c.node(survivor).path("k29")) == "%d-29\n" % victim
        print("\nfollower %d down: slowest of 30 writes %.3f s" % (victim, slowest))
        assert slowest < 2.0
        c.start(victim)
        wait_for(lambda: all_heads_equal(c), 60, "node %d to catch up" % victim)
        assert read_file(c.node(victim).path("k29")) == "%d-29\n" % victim


def test_paused_leader_serves_no_stale_value(cluster):
    c = cluster()
    leader = c.wait_leader()
    old = c.node(leader)
    write_file(old.path("k"), "old")
    others = [n.id for n in c.nodes if n.id != leader]
    c.pause(leader)
    try:
        # `leader` skips the paused node; both others must name the new one
        new_leader = c.wait_leader(among=others, exclude=(leader,))
        write_file(c.node(new_leader).path("k"), "new")
    finally:
        c.resume(leader)
    # the old leader learns it was replaced; a read there sees the new value
    assert call_with_deadline(lambda: read_file(old.path("k")), 20) == "new"
    wait_for(lambda: (old.status_within() or {}).get("role") != "leader", 10,
             "old leader to step down")


def test_restarted_node_catches_up(cluster):
    c = cluster()
    n3 = c.node(3)
    c.kill(3)
    leader = c.wait_leader(among=(1, 2))
    for i in range(300):
        write_file(c.node(1 + i % 2).path("k%d" % (i % 50)), "value %d" % i)
    c.start(3)
    wait_for(lambda: all_heads_equal(c), 60, "node 3 to catch up")
    for i in range(250, 300):
        assert read_file(n3.path("k%d" % (i % 50))) == "value %d" % i
    head = [n.status_within()["chain_head"] for n in c.nodes]
    assert head[0]["index"] >= 300 and leader


def test_partitioned_minority_cannot_commit(cluster):
    c = cluster(extra=("--commit-timeout-ms", "1500"))
    leader = c.wait_leader()
    minority = c.node(3 if leader != 3 else 1)
    majority = [n for n in c.nodes if n is not minority]
    for n in majority:
        c.faillink(minority.id, n.id)
    try:
        if leader == minority.id:
            # the cut-off node may still believe it leads: a majority decides
            c.wait_leader(among=[n.id for n in majority], exclude=(minority.id,),
                          majority=True)
        with pytest.raises(OSError) as info:
            write_file(minority.path("lost"), "must not commit")
        assert info.value.errno in (errno.ETIMEDOUT, errno.EIO, errno.EHOSTUNREACH)
        write_file(majority[0].path("kept"), "majority works")
        assert read_file(majority[1].path("kept")) == "majority works"
    finally:
        for n in majority:
            c.fixlink(minority.id, n.id)
    # converged: the minority holds every block the others hold (it may
    # still fail reads fast until it hears from the leader again)
    wait_for(lambda: all_heads_equal(c) and len(
        {(c.node(k).status_within() or {}).get("chain_head", {}).get("index")
         for k in (1, 2, 3)}) == 1, 30, "minority to converge")
    assert read_file(minority.path("kept")) == "majority works"


def test_bad_peers_change_nothing(cluster):
    zmq = pytest.importorskip("zmq")
    c = cluster()
    leader = c.wait_leader()
    write_file(c.node(1).path("k"), "v")
    before = [n.status()["chain_head"] for n in c.nodes]
    endpoint = "tcp://127.0.0.1:%d" % c.node(leader).port
    key = c.info()["key"]
    assert key, "the launcher made no cluster key (paxosctl keygen)"
    ctx = zmq.Context()
    try:
        # 1. no key: the CURVE handshake fails, nothing is delivered
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(endpoint)
        for _ in range(20):
            if plain.poll(0, zmq.POLLOUT):
                try:
                    plain.send(b"PXFS" + os.urandom(60), zmq.NOBLOCK)
                except zmq.Again:
                    pass      # the failed handshake took the pipe away since poll
        # 2. a wrong key: rejected by the authentication handler
        pub, sec = zmq.curve_keypair()
        wrong = ctx.socket(zmq.DEALER)
        wrong.setsockopt(zmq.LINGER, 0)
        wrong.curve_publickey, wrong.curve_secretkey = pub, sec
        with open(key) as f:
            fields = dict(l.split(": ", 1) for l in f.read().splitlines() if ": " in l)
        wrong.curve_serverkey = fields["public"].strip().encode()
        wrong.connect(endpoint)
        wait_for(lambda: c.node(leader).status()["rejected_connections"] > 0, 20,
                 "the wrong key to be rejected")
        # 3. the right key but garbage frames: dropped and counted
        good = ctx.socket(zmq.DEALER)
        good.setsockopt(zmq.LINGER, 0)
        good.curve_publickey = fields["public"].strip().encode()
        good.curve_secretkey = fields["secret"].strip().encode()
        good.curve_serverkey = fields["public"].strip().encode()
        good.connect(endpoint)
        rng = random.Random(7)
        for i in range(200):
            good.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))
        good.send(b"PXFS\x02\x01\x00\x00" + (1 << 30).to_bytes(4, "little"))
        wait_for(lambda: (c.node(leader).status_within() or {}).get("unknown_dropped", 0)
                 >= 100, 20, "garbage to be counted")
    finally:
        ctx.destroy(linger=0)
    # the cluster is unharmed
    write_file(c.node(2).path("k"), "after")
    assert read_file(c.node(3).path("k")) == "after"
    after = [n.status()["chain_head"] for n in c.nodes]
    assert all(a["index"] >= b["index"] for a, b in zip(after, before))
    assert c.wait_leader() == leader


LIN_KEYS = 8          # keys the linearizability clients share
LIN_PACE_S = 0.001    # pause of each client between operations


def test_random_faults_are_linearizable(cluster, tmp_path):
    """Concurrent clients on every mount while the launcher kills, pauses
    and cuts off nodes; every operation's invoke and return time is
    recorded and the history is checked with the simulator's
    linearizability checker."""
    c = cluster(extra=("--commit-timeout-ms", "3000"))
    lincheck = os.path.join(c.info()["bin"], "lincheck")
    rng = random.Random(int(os.environ.get("PAXOSFS_FAULT_SEED", "0")) or None)
    seed = rng.randrange(1 << 30)
    rng = random.Random(seed)
    print("\nfault schedule seed %d (PAXOSFS_FAULT_SEED=%d replays it)" % (seed, seed))
    history, lock, stop = [], threading.Lock(), threading.Event()
    down = {}              # node id -> "kill" | "pause" | "cut", not yet undone
    faults_done = []
    now_us = lambda: time.monotonic_ns() // 1000

    def client(cid, n):
        r = random.Random(seed * 100 + cid)
        mount = MountClient(n)
        i = 0
        while not stop.is_set():
            key = r.randrange(LIN_KEYS)
            path = "lin%d" % key
            if r.random() < 0.5:
                value = "c%d-%d" % (cid, i)
                i += 1
                t0 = now_us()
                try:
                    mount.write(path, value.encode())
                    rec = (key, "PUT", t0, now_us(), "0", value.encode().hex(), n.id)
                except OSError:
                    rec = (key, "PUT", t0, "pending", "0", value.encode().hex(), n.id)
                    stop.wait(0.02)
            else:
                t0 = now_us()
                try:
                    data = mount.read(path)
                    rec = (key, "GET", t0, now_us(), "found", data.hex() or "-", n.id)
                except FileNotFoundError:
                    rec = (key, "GET", t0, now_us(), "missing", "-", n.id)
                except OSError:
                    stop.wait(0.02)
                    continue
            with lock:
                history.append(rec)
            # paced: a history of tens of thousands of operations on a few
            # keys, with writes left pending by the faults, can exhaust the
            # checker's budget before it decides
            stop.wait(LIN_PACE_S)
        mount.close()

    def inflict(k, kind):
        if kind == "kill":
            c.kill(k)
        elif kind == "pause":
            c.pause(k)
        else:
            for other in (1, 2, 3):
                if other != k:
                    c.faillink(k, other)

    def undo(k, kind):
        if kind == "kill":
            c.start(k)
        elif kind == "pause":
            c.resume(k)
        else:
            for other in (1, 2, 3):
                if other != k:
                    c.fixlink(k, other)

    def faults():
        kinds = os.environ.get("PAXOSFS_FAULTS", "kill,pause,cut").split(",")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            victim = rng.randrange(1, 4)
            kind = rng.choice(kinds)
            down[victim] = kind
            inflict(victim, kind)
            faults_done.append(kind)
            stop.wait(rng.uniform(0.5, 2.0))
            undo(victim, kind)
            down.pop(victim)
            stop.wait(rng.uniform(0.2, 1.0))

    threads = [threading.Thread(target=client, args=(cid, c.nodes[cid % 3]))
               for cid in range(6)]
    for t in threads:
        t.start()
    try:
        faults()
    finally:
        # a failed step must not strand clients on a paused mount: undo
        # whatever is still in force, then stop the clients
        for k, kind in list(down.items()):
            try:
                undo(k, kind)
            except AssertionError as e:
                print("undoing %s of node %d: %s" % (kind, k, e))
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    print("faults injected: %s" % ", ".join(
        "%d %s" % (faults_done.count(k), k) for k in sorted(set(faults_done))))
    assert faults_done, "the schedule injected no fault"
    c.wait_leader()
    wait_for(lambda: all_heads_equal(c), 30, "all nodes to converge")
    # final reads on every node join the history
    for n in c.nodes:
        for key in range(LIN_KEYS):
            t0 = now_us()
            try:
                data = read_file(n.path("lin%d" % key), "rb")
                history.append((key, "GET", t0, now_us(), "found", data.hex() or "-"))
            except FileNotFoundError:
                history.append((key, "GET", t0, now_us(), "missing", "-"))
    done = sum(1 for h in history if h[3] != "pending")
    assert done > 100, "too few completed operations: %d" % done
    hist = tmp_path / "history.txt"
    hist.write_text("".join(" ".join(str(x) for x in h) + "\n" for h in history))
    out = subprocess.run([lincheck, "--budget", "50000000", str(hist)],
                         capture_output=True, text=True)
    print(out.stdout)
    assert out.returncode == 0, "seed %d: %s%s" % (seed, out.stdout, out.stderr)


def stop_cleanly(n, timeout=20.0):
    """Stop node n as a user would, by unmounting it (`fusermount3 -u`):
    paxosfs then exits and logs a clean stop.  Returns the log's last
    line about stopping."""
    pid = n.pid
    assert pid and pid_alive(pid)
    r = subprocess.run(["fusermount3", "-u", n.mnt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not pid_alive(pid), timeout, "node %d (pid %d) to exit" % (n.id, pid))
    stops = [l for l in n.log().splitlines() if l.startswith("paxosfs: node %d stopped" % n.id)]
    return stops[-1] if stops else None


def test_node_with_a_divergent_chain_resets_itself_and_votes_again(cluster):
    """Node 3 writes history of its own (alone, as a cluster of one) and
    rejoins.  Both others hold other blocks where it holds its own: it
    stops voting, moves that history aside (kept: it holds a write only
    node 3 acknowledged), starts over empty, catches up and votes again,
    so the cluster survives the loss of another node.  (Before, it
    abstained until its directory was wiped, and one more failure left no
    majority.)"""
    c = cluster(extra=("--commit-timeout-ms", "2000"))
    for i in range(5):
        write_file(c.node(1).path("k%d" % i), "v%d" % i)
    wait_for(lambda: all_heads_equal(c), 30, "equal chains")
    # node 3 writes history of its own: alone, as a cluster of one
    n3 = c.node(3)
    # "after a storage failure" would follow on an unclean exit (status 1)
    assert stop_cleanly(n3) == "paxosfs: node 3 stopped"
    solo_log = os.path.join(c.dir, "n3", "solo.log")
    with open(solo_log, "wb") as log:
        solo = subprocess.Popen([os.path.join(c.info()["bin"], "paxosfs"), "--id", "3",
                                 "--data", n3.data, "-f", n3.mnt],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: solo.poll() is not None or os.path.exists(n3.path(".status")),
                 20, "solo mount")
        assert solo.poll() is None, read_file(solo_log)
        write_file(n3.path("fork"), "only on node 3")
    finally:
        subprocess.run(["fusermount3", "-u", n3.mnt], capture_output=True)
        try:
            assert solo.wait(timeout=20) == 0, read_file(solo_log)
        finally:
            if solo.poll() is None:   # our own child, by its handle
                solo.kill()
                solo.wait(timeout=20)
    text = read_file(solo_log)
    assert not any(bad in text for bad in SUSPICIOUS), text[-4000:]
    for i in range(5):
        write_file(c.node(1).path("after%d" % i), "v%d" % i)
    c.start(3)
    wait_for(lambda: "found: chain_diverged" in (read_file(n3.path(".chain/incidents"))
                                                 if (n3.status_within() or {}).get(
                                                     "integrity", {}).get("incidents")
                                                 else ""),
             30, "node 3 to find that a majority holds other blocks")
    wait_for(lambda: (n3.status_within() or {}).get("voting") is True, 60,
             "node 3 to reset itself and vote again")
    assert "chain differs at block" in n3.log() and "resetting" in n3.log()
    with pytest.raises(FileNotFoundError):
        read_file(n3.path("fork"))
    assert read_file(n3.path("after4")) == "v4"
    kept = [os.path.join(d, f) for d in
            [os.path.join(n3.data, "damaged", x, "chain")
             for x in os.listdir(os.path.join(n3.data, "damaged"))]
            for f in os.listdir(d)]
    assert any(b"only on node 3" in open(f, "rb").read() for f in kept), kept
    # node 3 votes: the cluster survives the loss of another node
    leader = c.wait_leader(among=(1, 2, 3), majority=True)
    other = c.node(next(k for k in (1, 2, 3) if k != leader))
    c.kill(leader)
    write_file(other.path("needs-a-majority"), "x")
    assert read_file(other.path("needs-a-majority")) == "x"

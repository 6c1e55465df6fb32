"""A real paxosfs cluster: three processes on loopback, each with its own
mount and backing directory, replicating over ZeroMQ."""
import errno
import os
import random
import socket
import subprocess
import threading
import time

import pytest

from conftest import (PAXOSCTL, MountClient, read_file, wait_for, write_file)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def read_status(n, timeout=5.0):
    """.status of a live node, read in a thread so a stopped node cannot
    hang the test."""
    box = {}

    def run():
        try:
            box["v"] = n.status()
        except (OSError, ValueError) as e:
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return box.get("v")


class Cluster:
    def __init__(self, nodes_factory, tmp_path, size=3, extra=()):
        self.tmp = str(tmp_path)
        self.key = os.path.join(self.tmp, "cluster.key")
        r = subprocess.run([PAXOSCTL, "keygen", self.key], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        ports = free_ports(size)
        self.ports = ports
        spec = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
        self.nodes = [nodes_factory(i + 1, ["--peers", spec, "--key", self.key] + list(extra))
                      for i in range(size)]

    def start(self):
        for n in self.nodes:
            n.start()
        return self.wait_leader()

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def live(self):
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def wait_leader(self, among=None, timeout=30.0, exclude=()):
        among = among or [n for n in self.live() if n.id not in exclude]

        def agreed():
            seen = set()
            for n in among:
                st = read_status(n)
                if not st or st["leader"] == 0 or st["leader"] in exclude:
                    return None
                seen.add(st["leader"])
            if len(seen) != 1:
                return None
            leader = seen.pop()
            st = read_status(self.node(leader))
            return leader if st and st["role"] == "leader" else None

        return wait_for(agreed, timeout, "one leader agreed by %s" % [n.id for n in among],
                        interval=0.02)

    def link(self, a, b, action):
        for x, y in ((a, b), (b, a)):
            r = subprocess.run([PAXOSCTL, "link", self.node(x).data, action, str(y)],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def cluster(nodes, tmp_path):
    def make(size=3, extra=()):
        c = Cluster(lambda i, args: nodes(i, args), tmp_path, size, extra)
        c.start()
        return c
    return make


def test_write_on_one_node_read_on_the_others(cluster):
    c = cluster()
    write_file(c.node(1).path("shared"), "from node 1\n")
    assert read_file(c.node(2).path("shared")) == "from node 1\n"
    assert read_file(c.node(3).path("shared")) == "from node 1\n"
    write_file(c.node(3).path("shared"), "from node 3\n")
    assert read_file(c.node(1).path("shared")) == "from node 3\n"
    assert sorted(os.listdir(c.node(2).mnt)) == [".chain", ".status", "shared"]


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


def all_heads_equal(c, nodes=None):
    heads = [read_status(n) for n in (nodes or c.live())]
    if any(h is None for h in heads):
        return False
    idx = min(h["chain_head"]["index"] for h in heads)
    if idx == 0:
        return False
    hashes = set()
    for n in (nodes or c.live()):
        text = read_file(n.path(".chain/%010d" % idx))
        hashes.add([l for l in text.splitlines() if l.startswith("hash: ")][0])
    return len(hashes) == 1 and heads


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

    threads = [threading.Thread(target=writer, args=(others[w % 2], w)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) >= 40, 60, "writes before the kill")
        before = sum(acked.values())
        killed_at = time.monotonic()
        c.node(leader).kill9()
        new_leader = c.wait_leader(among=others, exclude=(leader,))
        elapsed = time.monotonic() - killed_at
        print("\nnew leader %d elected %.3f s after SIGKILL of leader %d"
              % (new_leader, elapsed, leader))
        wait_for(lambda: sum(acked.values()) > before + 40, 60, "writes after failover")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert new_leader != leader
    for key, i in acked.items():
        for n in others:
            assert int(read_file(n.path(key))) >= i, (key, n.id)


def test_paused_leader_serves_no_stale_value(cluster):
    c = cluster()
    leader = c.wait_leader()
    old = c.node(leader)
    write_file(old.path("k"), "old")
    others = [n for n in c.nodes if n.id != leader]
    old.proc.send_signal(19)          # SIGSTOP
    try:
        new_leader = c.wait_leader(among=others, exclude=(leader,))
        write_file(c.node(new_leader).path("k"), "new")
    finally:
        old.proc.send_signal(18)      # SIGCONT
    # the old leader learns it was replaced; a read there sees the new value
    assert read_file(old.path("k")) == "new"
    wait_for(lambda: (read_status(old) or {}).get("role") != "leader", 10,
             "old leader to step down")


def test_restarted_node_catches_up(cluster):
    c = cluster()
    n3 = c.node(3)
    n3.kill9()
    leader = c.wait_leader(among=c.nodes[:2])
    for i in range(300):
        write_file(c.node(1 + i % 2).path("k%d" % (i % 50)), "value %d" % i)
    n3.start()
    wait_for(lambda: all_heads_equal(c), 60, "node 3 to catch up")
    for i in range(250, 300):
        assert read_file(n3.path("k%d" % (i % 50))) == "value %d" % i
    head = [read_status(n)["chain_head"] for n in c.nodes]
    assert head[0]["index"] >= 300 and leader


def test_partitioned_minority_cannot_commit(cluster):
    c = cluster(extra=("--commit-timeout-ms", "1500"))
    leader = c.wait_leader()
    minority = c.node(3 if leader != 3 else 1)
    majority = [n for n in c.nodes if n is not minority]
    for n in majority:
        c.link(minority.id, n.id, "drop")
    try:
        if leader == minority.id:
            c.wait_leader(among=majority, exclude=(minority.id,))
        with pytest.raises(OSError) as info:
            write_file(minority.path("lost"), "must not commit")
        assert info.value.errno in (errno.ETIMEDOUT, errno.EIO)
        write_file(majority[0].path("kept"), "majority works")
        assert read_file(majority[1].path("kept")) == "majority works"
    finally:
        for n in majority:
            c.link(minority.id, n.id, "heal")
    wait_for(lambda: all_heads_equal(c), 30, "minority to converge")
    assert read_file(minority.path("kept")) == "majority works"


def test_bad_peers_change_nothing(cluster):
    zmq = pytest.importorskip("zmq")
    c = cluster()
    leader = c.wait_leader()
    write_file(c.node(1).path("k"), "v")
    before = [read_status(n)["chain_head"] for n in c.nodes]
    ctx = zmq.Context()
    try:
        # 1. no key: the CURVE handshake fails, nothing is delivered
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect("tcp://127.0.0.1:%d" % c.ports[leader - 1])
        for _ in range(20):
            if plain.poll(0, zmq.POLLOUT):
                plain.send(b"PXFS" + os.urandom(60), zmq.NOBLOCK)
        # 2. a wrong key: rejected by the authentication handler
        pub, sec = zmq.curve_keypair()
        wrong = ctx.socket(zmq.DEALER)
        wrong.setsockopt(zmq.LINGER, 0)
        wrong.curve_publickey, wrong.curve_secretkey = pub, sec
        with open(c.key) as f:
            fields = dict(l.split(": ", 1) for l in f.read().splitlines() if ": " in l)
        wrong.curve_serverkey = fields["public"].strip().encode()
        wrong.connect("tcp://127.0.0.1:%d" % c.ports[leader - 1])
        wait_for(lambda: read_status(c.node(leader))["rejected_connections"] > 0, 20,
                 "the wrong key to be rejected")
        # 3. the right key but garbage frames: dropped and counted
        good = ctx.socket(zmq.DEALER)
        good.setsockopt(zmq.LINGER, 0)
        good.curve_publickey = fields["public"].strip().encode()
        good.curve_secretkey = fields["secret"].strip().encode()
        good.curve_serverkey = fields["public"].strip().encode()
        good.connect("tcp://127.0.0.1:%d" % c.ports[leader - 1])
        rng = random.Random(7)
        for i in range(200):
            good.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))
        good.send(b"PXFS\x01\x01\x00\x00" + (1 << 30).to_bytes(4, "little"))
        wait_for(lambda: (read_status(c.node(leader)) or {}).get("unknown_dropped", 0) >= 100,
                 20, "garbage to be counted")
    finally:
        ctx.destroy(linger=0)
    # the cluster is unharmed
    write_file(c.node(2).path("k"), "after")
    assert read_file(c.node(3).path("k")) == "after"
    after = [read_status(n)["chain_head"] for n in c.nodes]
    assert all(a["index"] >= b["index"] for a, b in zip(after, before))
    assert c.wait_leader() == leader


LINCHECK = os.path.join(os.path.dirname(PAXOSCTL), "lincheck")


def test_random_faults_are_linearizable(cluster, tmp_path):
    """Concurrent clients on every mount while nodes are killed, paused and
    cut off; every operation's invoke and return time is recorded and the
    history is checked with the simulator's linearizability checker."""
    c = cluster(extra=("--commit-timeout-ms", "3000"))
    rng = random.Random(int(os.environ.get("PAXOSFS_FAULT_SEED", "0")) or None)
    seed = rng.randrange(1 << 30)
    rng = random.Random(seed)
    print("\nfault schedule seed %d (PAXOSFS_FAULT_SEED=%d replays it)" % (seed, seed))
    history, lock, stop = [], threading.Lock(), threading.Event()
    down = {}              # node id -> "killed" | "paused" | "cut"
    now_us = lambda: time.monotonic_ns() // 1000

    def client(cid, n):
        r = random.Random(seed * 100 + cid)
        mount = MountClient(n)
        i = 0
        while not stop.is_set():
            key = r.randrange(4)
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
        mount.close()

    def faults():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            victim = c.node(rng.randrange(1, 4))
            kind = rng.choice(os.environ.get("PAXOSFS_FAULTS", "kill,pause,cut").split(","))
            if kind == "kill":
                victim.kill9()
            elif kind == "pause":
                victim.proc.send_signal(19)
            else:
                for other in c.nodes:
                    if other is not victim:
                        c.link(victim.id, other.id, "drop")
            down[victim.id] = kind
            stop.wait(rng.uniform(0.5, 2.0))
            if kind == "kill":
                victim.start()
            elif kind == "pause":
                victim.proc.send_signal(18)
            else:
                for other in c.nodes:
                    if other is not victim:
                        c.link(victim.id, other.id, "heal")
            down.pop(victim.id)
            stop.wait(rng.uniform(0.2, 1.0))

    threads = [threading.Thread(target=client, args=(cid, c.nodes[cid % 3]))
               for cid in range(6)]
    for t in threads:
        t.start()
    try:
        faults()
    finally:
        for n in c.nodes:
            if n.proc is not None:
                n.proc.send_signal(18)
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    c.wait_leader()
    wait_for(lambda: all_heads_equal(c), 30, "all nodes to converge")
    # final reads on every node join the history
    for n in c.nodes:
        for key in range(4):
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
    out = subprocess.run([LINCHECK, "--budget", "50000000", str(hist)],
                         capture_output=True, text=True)
    print(out.stdout)
    assert out.returncode == 0, "seed %d: %s%s" % (seed, out.stdout, out.stderr)


def test_node_with_a_divergent_chain_stops_voting(cluster):
    c = cluster(extra=("--commit-timeout-ms", "2000"))
    for i in range(5):
        write_file(c.node(1).path("k%d" % i), "v%d" % i)
    wait_for(lambda: all_heads_equal(c), 30, "equal chains")
    # node 3 writes history of its own: alone, as a cluster of one
    n3 = c.node(3)
    assert n3.stop() == 0
    solo = subprocess.Popen([n3.command()[0], "--id", "3", "--data", n3.data, "-f", n3.mnt],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(n3.path(".status")), 20, "solo mount")
        write_file(n3.path("fork"), "only on node 3")
    finally:
        subprocess.run(["fusermount3", "-u", n3.mnt], capture_output=True)
        solo.wait(timeout=20)
    for i in range(5):
        write_file(c.node(1).path("after%d" % i), "v%d" % i)
    n3.start()
    # the others' chains pass the fork point: node 3 sees both differ
    wait_for(lambda: (read_status(n3) or {}).get("voting") is False, 30,
             "node 3 to stop voting")
    st = read_status(n3)
    assert sorted(d["peer"] for d in st["diverged_from"]) == [1, 2]
    assert "differs from a majority" in n3.log()
    for n in c.nodes[:2]:
        assert read_status(n)["voting"] is True
    # without node 3's votes, one more failure leaves no majority
    leader = c.wait_leader(among=c.nodes[:2], exclude=(3,))
    other = c.node(2 if leader == 1 else 1)
    c.node(leader).kill9()
    with pytest.raises(OSError) as info:
        write_file(other.path("needs-a-majority"), "x")
    assert info.value.errno in (errno.ETIMEDOUT, errno.EIO)

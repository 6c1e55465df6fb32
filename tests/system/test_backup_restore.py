"""Backup and restore with paxosctl: a stopped single node's backing
directory is backed up, restored into a new directory that a node serves
with every acknowledged value, and a damaged backup file is refused with
file and offset before anything is created.  A running node is backed up
online while writers go on (a snapshot it takes now plus the chain after
it); restored in place of a cluster node, the older copy recovers, catches
up and loses no acknowledged write."""
import os
import re
import shutil
import subprocess
import threading

from conftest import PAXOSCTL, Node, read_file, wait_for, write_file


def ctl(*args):
    return subprocess.run([PAXOSCTL] + list(args), capture_output=True, text=True,
                          timeout=120)


def test_backup_and_restore_offline(nodes, tmp_path):
    n = nodes()
    n.start()
    values = {"k%d" % i: "value %d\n" % (i * i) for i in range(40)}
    for k, v in values.items():
        write_file(n.path(k), v)
    backup = str(tmp_path / "node1.pxb")

    assert n.stop() == 0

    out = ctl("backup", n.data, backup)
    assert out.returncode == 0, out.stderr
    m = re.search(r"head hash ([0-9a-f]{64})", out.stdout)
    assert m, out.stdout
    head_hash = m.group(1)

    restored = Node(tmp_path / "restored", 1)
    try:
        # a target that is not empty is refused
        os.makedirs(restored.data)
        with open(os.path.join(restored.data, "other"), "w") as f:
            f.write("x")
        out = ctl("restore", backup, restored.data)
        assert out.returncode == 2 and "not empty" in out.stderr, out.stderr
        os.unlink(os.path.join(restored.data, "other"))

        out = ctl("restore", backup, restored.data)
        assert out.returncode == 0, out.stderr
        assert head_hash in out.stdout
        out = ctl("verify", restored.data)
        assert out.returncode == 0, out.stderr
        assert head_hash in out.stdout

        restored.start()
        for k, v in values.items():
            assert read_file(restored.path(k)) == v
        write_file(restored.path("after"), "restored node writes\n")
        assert restored.stop() == 0
        assert ctl("verify", restored.data).returncode == 0
    finally:
        restored.cleanup()


def test_damaged_backup_is_refused(nodes, tmp_path):
    n = nodes()
    n.start()
    for i in range(10):
        write_file(n.path("k%d" % i), "some value %d" % i)
    assert n.stop() == 0
    backup = str(tmp_path / "b.pxb")
    assert ctl("backup", n.data, backup).returncode == 0
    with open(backup, "rb") as f:
        data = bytearray(f.read())
    pos = data.find(b"some value 7")
    assert pos > 0
    data[pos] ^= 0x20
    with open(backup, "wb") as f:
        f.write(data)
    target = str(tmp_path / "target")
    out = ctl("restore", backup, target)
    assert out.returncode == 1, out.stdout + out.stderr
    m = re.search(r"damaged: (\S+) offset (\d+) block (\d+)", out.stderr)
    assert m and m.group(1) == backup, out.stderr
    assert int(m.group(2)) <= pos
    assert not os.path.exists(target)


class Writer(threading.Thread):
    """Writes key i % keys with value "i" through one mount until stopped;
    per key the last acknowledged number."""

    def __init__(self, node, prefix, keys=20):
        super().__init__(daemon=True)
        self.node, self.prefix, self.keys = node, prefix, keys
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            key = "%s%02d" % (self.prefix, i % self.keys)
            try:
                write_file(self.node.path(key), "%d\n" % i)
            except OSError:
                self.stop_ev.wait(0.05)
            else:
                with self.lock:
                    self.acked[key] = i
            i += 1

    def snapshot(self):
        with self.lock:
            return dict(self.acked)

    def stop(self):
        self.stop_ev.set()
        self.join(60)
        assert not self.is_alive()


def test_online_backup_of_a_running_node(nodes, tmp_path):
    """paxosctl backup on a running node with a writer going: exit 0, the
    node took a snapshot for it and goes on serving; the backup restores
    into a node that holds, for every key, the value acknowledged before
    the backup started or a later one."""
    n = nodes()
    n.start()
    w = Writer(n, "k")
    w.start()
    try:
        wait_for(lambda: len(w.snapshot()) == w.keys, 30, "every key written")
        before = w.snapshot()
        backup = str(tmp_path / "online.pxb")
        out = ctl("backup", n.data, backup)
        assert out.returncode == 0, out.stderr
        assert "backup (online)" in out.stdout and "snapshot at block" in out.stdout, out.stdout
        assert n.status()["snapshot"]["taken"] >= 1
        after = w.snapshot()
        assert after != before   # the writer went on meanwhile
    finally:
        w.stop()
    restored = Node(tmp_path / "restored", 1)
    try:
        out = ctl("restore", backup, restored.data)
        assert out.returncode == 0, out.stderr
        restored.start()
        for key, i in before.items():
            got = int(read_file(restored.path(key)))
            assert got >= i and got % w.keys == int(key[1:]), (key, got, i)
        assert restored.stop() == 0
        assert ctl("verify", restored.data).returncode == 0
    finally:
        restored.cleanup()


def test_online_backup_restored_in_place_of_a_cluster_node(launched, tmp_path):
    """Node 2's online backup, restored in place of its directory after
    more writes: the older copy recovers its acceptor state before it
    votes (its peers saw later starts), catches up on what was committed
    since, and no acknowledged write is lost anywhere."""
    c = launched(3, extra=("--commit-timeout-ms", "3000"))
    leader = c.wait_leader()
    victim = c.node(2 if leader != 2 else 3)
    writer = c.node(leader)
    w = Writer(writer, "c")
    w.start()
    try:
        wait_for(lambda: len(w.snapshot()) == w.keys, 30, "every key written")
        backup = str(tmp_path / ("n%d.pxb" % victim.id))
        out = ctl("backup", victim.data, backup)
        assert out.returncode == 0, out.stderr
        c.kill(victim.id)
        mark = w.snapshot()
        wait_for(lambda: all(w.snapshot()[k] > mark[k] for k in mark), 30,
                 "writes after the backup")
        shutil.rmtree(victim.data)
        out = ctl("restore", backup, victim.data)
        assert out.returncode == 0, out.stderr
        c.start(victim.id)
    finally:
        w.stop()
    final = w.snapshot()

    def level():
        heads = [c.node(k).status_within() for k in (1, 2, 3)]
        return all(heads) and len({h["chain_head"]["hash"] for h in heads}) == 1
    wait_for(level, 60, "the restored node level with the others")
    wait_for(lambda: (lambda st: st and st["confirmed"] is True and not st.get("recovering"))(
        victim.status_within()), 60, "the restored node recovered and voting")
    for key, i in final.items():
        assert int(read_file(victim.path(key))) >= i, key
    assert "older copy" in victim.log() or "recover" in victim.log()

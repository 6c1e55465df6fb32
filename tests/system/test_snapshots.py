"""Snapshots in a running cluster: taken by entry count and on demand
(paxosctl snapshot), restart from the newest snapshot, compaction of the
chain, and a node that lacks compacted blocks (stopped meanwhile, or
wiped) catching up by snapshot.  Three real processes through
tools/cluster (conftest.launched); waiting is always a polled condition."""
import os
import shutil
import subprocess

from conftest import PAXOSCTL, read_file, wait_for, write_file

# small snapshots and segments, so that a few thousand writes take several
# snapshots and compaction removes segments
SNAP_ARGS = ("--snapshot-entries", "300", "--chain-segment-bytes", "16384")


def snap(node):
    return node.status_within()["snapshot"]


def head(node):
    st = node.status_within()
    return st["chain_head"]["index"] if st else None


def write_many(node, count, prefix="k", keys=200):
    """count writes over `keys` files; returns what each file holds last
    (every write returned: acknowledged)."""
    last = {}
    for i in range(count):
        name = "%s%04d" % (prefix, i % keys)
        value = "%s value %d\n" % (name, i)
        write_file(node.path(name), value)
        last[name] = value
    return last


def same_head_everywhere(c, ids=(1, 2, 3)):
    heads = [c.node(k).status_within() for k in ids]
    if any(h is None for h in heads):
        return False
    pairs = {(h["chain_head"]["index"], h["chain_head"]["hash"]) for h in heads}
    return len(pairs) == 1 and pairs.pop()


def check_values(node, last):
    for name, value in last.items():
        assert read_file(node.path(name)) == value, name


def test_stopped_node_catches_up_by_snapshot(launched):
    """Node 3 is stopped while thousands of writes are made and the others
    take snapshots and compact their chains; started again it lacks blocks
    nobody holds any more, installs a snapshot from the leader, and ends
    with the same chain head and every acknowledged value."""
    c = launched(3, extra=SNAP_ARGS)
    leader = c.wait_leader()
    if leader == 3:
        c.kill(3)
        c.start(3)
        leader = c.wait_leader(exclude=(3,))
    c.kill(3)
    writer = c.node(leader)
    last = write_many(writer, 2500)
    st = snap(writer)
    assert st["taken"] >= 3, st
    assert st["chain_base"] > 0, "no segment was compacted: %s" % st
    c.start(3)
    wait_for(lambda: snap(c.node(3))["installed"] >= 1, 60,
             "node 3 installing a snapshot")
    more = write_many(writer, 50, prefix="after")
    wait_for(lambda: same_head_everywhere(c), 60, "one chain head on every node")
    check_values(c.node(3), last)
    check_values(c.node(3), more)
    s3 = snap(c.node(3))
    assert s3["receiving"]["completed"] >= 1
    assert s3["state_diverged"] is False
    assert snap(writer)["sending"]["bytes"] > 0


def test_wiped_node_catches_up(launched):
    """A node whose backing directory was emptied comes back through a
    snapshot and serves the same values."""
    c = launched(3, extra=SNAP_ARGS)
    leader = c.wait_leader()
    victim = 3 if leader != 3 else 2
    last = write_many(c.node(leader), 1500)
    c.kill(victim)
    data = c.node(victim).data
    for entry in os.listdir(data):
        path = os.path.join(data, entry)
        if entry.endswith(".log"):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    more = write_many(c.node(leader), 400, prefix="w")
    c.start(victim)
    wait_for(lambda: same_head_everywhere(c), 90, "one chain head on every node")
    assert snap(c.node(victim))["installed"] >= 1
    check_values(c.node(victim), last)
    check_values(c.node(victim), more)


def test_restart_from_snapshot_same_head_and_values(launched):
    """Every node stopped and started again restarts from its newest
    snapshot plus the chain after it: the same chain head and values."""
    c = launched(3, extra=SNAP_ARGS)
    leader = c.wait_leader()
    last = write_many(c.node(leader), 1200)
    wait_for(lambda: same_head_everywhere(c), 30, "one chain head")
    before = {k: c.node(k).status_within()["chain_head"] for k in (1, 2, 3)}
    for k in (1, 2, 3):
        assert snap(c.node(k))["taken"] >= 1
    for k in (1, 2, 3):
        c.kill(k)
    for k in (1, 2, 3):
        c.start(k)
    c.wait_leader()
    for k in (1, 2, 3):
        node = c.node(k)
        assert "restarted from the snapshot at block" in node.log()
        h = node.status_within()["chain_head"]
        assert h["index"] >= before[k]["index"]
        check_values(node, last)
    # and the chain that continues is the same everywhere
    write_many(c.node(c.wait_leader()), 10, prefix="again")
    wait_for(lambda: same_head_everywhere(c), 30, "one chain head")


def test_paxosctl_snapshot(launched):
    """`paxosctl snapshot DIR` takes a snapshot now and reports it once it
    is durable; the file is in DIR/snap and paxosctl verify is not needed
    to trust it: the node restarted from it reads the same values."""
    c = launched(3)   # default bounds: no snapshot by count in this test
    leader = c.wait_leader()
    node = c.node(leader)
    last = write_many(node, 100)
    r = subprocess.run([PAXOSCTL, "snapshot", node.data], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("snapshot index "), r.stdout
    index = int(r.stdout.split()[2])
    assert index >= 100
    assert os.path.exists(os.path.join(node.data, "snap",
                                       "snap-%020d.pxs" % index))
    st = snap(node)
    assert st["index"] == index and st["keys"] == 100
    # the leader's checkpoint is compared by every node
    wait_for(lambda: all(snap(c.node(k))["checkpoints_ok"] >= 1 for k in (1, 2, 3)),
             30, "every node comparing the checkpoint")
    r = subprocess.run([PAXOSCTL, "snapshot", "/nonexistent-dir"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no admin socket" in r.stderr
    c.kill(leader)
    c.start(leader)
    check_values(c.node(leader), last)


def test_chain_dir_shows_snapshot_and_compacted_chain(launched):
    """.chain/snapshot describes the newest snapshot (index, head hash,
    state digest, key count, sizes raw and compressed), read-only; the
    listing starts after the compacted blocks, which are gone (ENOENT)."""
    import errno
    c = launched(3, extra=SNAP_ARGS)
    leader = c.wait_leader()
    node = c.node(leader)
    write_many(node, 1500, keys=50)
    st = snap(node)
    assert st["chain_base"] > 0, st
    names = os.listdir(node.path(".chain"))
    assert "snapshot" in names
    blocks = sorted(int(x) for x in names if x.isdigit())
    assert blocks[0] == st["chain_base"] + 1
    text = read_file(node.path(".chain/snapshot"))
    fields = dict(line.split(": ", 1) for line in text.splitlines())
    index = int(fields["snapshot index"])
    assert index >= 300 and int(fields["keys"]) == 50
    assert int(fields["raw bytes"]) > 0 and int(fields["compressed bytes"]) > 0
    assert len(fields["head hash"]) == 64 and len(fields["state digest"]) == 64
    if index > st["chain_base"]:
        block = read_file(node.path(".chain/%010d" % index))
        assert ("hash: " + fields["head hash"]) in block
    try:
        open(node.path(".chain/%010d" % 1)).close()
        raise AssertionError("a compacted block is still readable")
    except OSError as e:
        assert e.errno == errno.ENOENT
    try:
        open(node.path(".chain/snapshot"), "w").close()
        raise AssertionError(".chain/snapshot opened for writing")
    except OSError as e:
        assert e.errno == errno.EACCES


def test_unasked_snapshot_frames_are_dropped_and_counted(launched):
    """A holder of the cluster key sends a node snapshot chunks it never
    asked for (as member 2), and asks for more than a window of a snapshot
    that node does not hold: the chunks are dropped and counted, the asks
    refused and counted, nothing is installed, and writes go on."""
    import struct
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    import hostile
    c = launched(3)
    target = c.node(1)
    key = hostile.load_key(c.info()["key"])
    peer = hostile.Peer(target.port, key=key)
    try:
        data = os.urandom(1000)
        for i in range(20):
            body = struct.pack("<IIQQQBI", 2, 1, 1000 + i, 0, 1 << 40, 0,
                               len(data)) + data
            assert peer.send(hostile.frame(3, body))
        ask = struct.pack("<IIQQI", 2, 1, 0, 0, 256 << 20)
        assert peer.send(hostile.frame(7, ask))
        wait_for(lambda: snap(target)["receiving"]["dropped"] >= 20, 20,
                 "the unasked chunks counted")
        wait_for(lambda: snap(target)["sending"]["refused"] >= 1, 20,
                 "the ask refused")
    finally:
        peer.close()
    st = snap(target)
    assert st["installed"] == 0 and st["receiving"]["active"] is False
    write_file(target.path("after"), "still writing\n")
    assert read_file(c.node(2).path("after")) == "still writing\n"
    assert "dropped a snapshot chunk from node 2" in target.log()


def tree(node, names):
    """What the mount shows of `names`: kind, permission bits, uid, and
    the contents of regular files."""
    import stat
    out = {}
    for name in names:
        st = os.stat(node.path(name))
        entry = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid)
        if stat.S_ISREG(st.st_mode):
            entry += (read_file(node.path(name)),)
        out[name] = entry
    return out


def test_snapshot_carries_directories_and_modes(launched):
    """Directories, files below them and modes set by chmod (keys with an
    owner record) survive a snapshot: a wiped node installs one and shows
    the same tree, modes and values, and so does every node restarted from
    its own snapshot."""
    c = launched(3, extra=SNAP_ARGS)
    leader = c.wait_leader()
    node = c.node(leader)
    os.mkdir(node.path("d1"))
    os.mkdir(node.path("d1/d2"))
    write_file(node.path("d1/d2/deep"), "deep value\n")
    write_file(node.path("d1/top"), "top value\n")
    os.chmod(node.path("d1/top"), 0o640)
    os.chmod(node.path("d1/d2"), 0o750)
    names = ["d1", "d1/d2", "d1/d2/deep", "d1/top"]
    want = tree(node, names)
    assert want["d1/top"][1] == 0o640 and want["d1/d2"][1] == 0o750
    victim = 3 if leader != 3 else 2
    write_many(node, 700, prefix="f")
    c.kill(victim)
    data = c.node(victim).data
    for entry in os.listdir(data):
        path = os.path.join(data, entry)
        if entry.endswith(".log"):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    write_many(node, 700, prefix="g")
    assert snap(node)["chain_base"] > 0, snap(node)
    c.start(victim)
    wait_for(lambda: same_head_everywhere(c), 90, "one chain head on every node")
    assert snap(c.node(victim))["installed"] >= 1
    assert tree(c.node(victim), names) == want
    assert sorted(os.listdir(c.node(victim).path("d1"))) == ["d2", "top"]
    for k in (1, 2, 3):
        c.kill(k)
    for k in (1, 2, 3):
        c.start(k)
    c.wait_leader()
    for k in (1, 2, 3):
        assert "restarted from the snapshot at block" in c.node(k).log()
        assert tree(c.node(k), names) == want
        assert snap(c.node(k))["state_diverged"] is False

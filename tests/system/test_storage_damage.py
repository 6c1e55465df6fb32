"""A node whose backing directory was cut, emptied, rolled back, replaced
or read by others: it must never cost an acknowledged write, and it must
say what happened.

Every cluster test runs writers on the mounts while the fault happens, and
checks afterwards, on every mount that serves, that each key holds its
last acknowledged value (or a value whose write failed and so may still
have committed).  The damaged node says what happened in its log, and in
.status when it runs.

  - a chain segment cut at any offset on a stopped node is damage, never a
    torn tail: `paxosctl verify` exits 1 and the node refuses to start,
    naming file, offset and block;
  - a lost, emptied, truncated or damaged acceptor store makes the node
    recover before it votes (.status "recovering"), even while the leader
    that shares the newest writes with it is paused;
  - a backing directory restored from an older copy is recognised by the
    peers' record of the node's starts, while the leader is down and the
    third node was cut off during the newest writes;
  - a chain from another cluster is refused, or (the whole directory
    replaced) never confirmed, and its blocks are never served;
  - a forged CATCHUP is not installed; a diverged node serves none of its
    own values and resets itself from the others, keeping its history;
  - the backing directory is private.
"""
import errno
import glob
import os
import re
import shutil
import struct
import subprocess
import threading
import time

import pytest

import hostile

from conftest import (PAXOSCTL, MountClient, call_with_deadline, pid_alive, read_file,
                      wait_for, write_file)

TIMEOUT_ARGS = ("--commit-timeout-ms", "3000")


# ---------------------------------------------------------------- helpers

class Writers:
    """Writer threads, each with keys of its own, through the given nodes'
    mounts.  Per key: the last acknowledged value and every value whose
    write failed (it may still commit, and may land after a later one)."""

    def __init__(self, nodes, tag, per_node=2, keys=6):
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.failed, self.count = {}, {}, 0
        self.keys = keys
        self.threads = [threading.Thread(target=self.run, args=(n, "%s%d-%d" % (tag, n.id, i)),
                                         daemon=True)
                        for n in nodes for i in range(per_node)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, node, wid):
        mount = MountClient(node)
        i = 0
        while not self.stop_ev.is_set():
            key = "%s-%d" % (wid, i % self.keys)
            try:
                mount.write(key, b"%s %d" % (wid.encode(), i))
            except OSError:
                with self.lock:
                    self.failed.setdefault(key, set()).add(i)
                self.stop_ev.wait(0.05)
            else:
                with self.lock:
                    self.acked[key] = i
                    self.count += 1
            i += 1
        mount.close()

    def wait_more(self, n, timeout=60):
        with self.lock:
            target = self.count + n
        wait_for(lambda: self.count >= target, timeout, "%d more acknowledged writes" % n)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a writer is stuck"


def check_acked(writers, node, timeout=20.0):
    """Every acknowledged write of `writers` on node's mount: the key holds
    its last acknowledged value, or one whose write failed."""
    bad = []
    for w in filter(None, writers):
        for key, i in sorted(w.acked.items()):
            text = call_with_deadline(lambda: read_file(node.path(key), "rb"), timeout)
            if text is None:
                bad.append("%s: unreadable" % key)
                continue
            got = int(text.split()[1])
            if got != i and got not in w.failed.get(key, ()) and got < i:
                bad.append("%s: %d, acknowledged %d" % (key, got, i))
    assert not bad, "node %d lost acknowledged writes: %s" % (node.id, bad[:10])
    return sum(len(w.acked) for w in filter(None, writers))


def stop_cleanly(n, timeout=20.0):
    pid = n.pid
    assert pid and pid_alive(pid)
    r = subprocess.run(["fusermount3", "-u", n.mnt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not pid_alive(pid), timeout, "node %d to exit" % n.id)


def segments(data):
    files = sorted(glob.glob(os.path.join(data, "chain", "seg-*.blk")))
    assert files, "no chain segment under %s" % data
    return files


def verify(data):
    return subprocess.run([PAXOSCTL, "verify", data], capture_output=True, text=True,
                          timeout=60)


def durable_mark(data):
    """The chain position the acceptor store recorded as durable (None from
    a paxosctl that does not print it)."""
    m = re.search(r"chain durable to block (\d+)", verify(data).stdout)
    return int(m.group(1)) if m else None


def record_ends(seg):
    """(first block, [end offset of each whole block]) of a segment file."""
    first = int(os.path.basename(seg)[4:24])
    with open(seg, "rb") as f:
        data = f.read()
    ends, off = [], 0
    while off + 16 <= len(data):
        length = struct.unpack_from("<I", data, off + 8)[0]
        if length < 108 or off + length > len(data):
            break
        off += length
        ends.append(off)
    return first, ends


def cut_chain_to(data, block):
    """A power loss: the chain keeps blocks 1..block only."""
    seg = segments(data)[-1]
    first, ends = record_ends(seg)
    assert block >= first, "block %d is not in the last segment" % block
    os.truncate(seg, ends[block - first])


def node_status(n, timeout=5.0):
    return n.status_within(timeout) or {}


def followers(c, leader):
    return [k for k in (1, 2, 3) if k != leader]


# ------------------------------------------------- 1. cut chain segments

@pytest.mark.parametrize("where", ["first-block", "middle", "last-block", "whole-segment"])
def test_cut_segment_is_damage_not_a_torn_tail(launched, where):
    """A follower's segment is cut (or removed) while it is stopped.  What
    was durable can never be a torn tail: `paxosctl verify` exits 1 naming
    file, offset and block.  Started, the node says so (file, offset,
    block, in its log and .chain/incidents), moves the damaged segment
    and its acceptor log to DIR/damaged/<incident>/, recovers, learns the
    blocks again from the peers and serves, with no operator action; the
    other two go on without losing an acknowledged write.  (Before, it
    refused to start until an operator acted.)"""
    c = launched(3, extra=TIMEOUT_ARGS)
    leader = c.wait_leader()
    victim = c.node(followers(c, leader)[0])
    other = c.node(followers(c, leader)[1])
    w = Writers([c.node(leader), other], "cut").start()
    try:
        w.wait_more(150)
        stop_cleanly(victim)
        w.wait_more(50)
        seg = segments(victim.data)[-1]
        size = os.path.getsize(seg)
        if where == "whole-segment":
            os.unlink(seg)
        else:
            os.truncate(seg, {"first-block": 96, "middle": size // 2,
                              "last-block": size - 7}[where])
        out = verify(victim.data)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "damaged:" in out.stderr and "offset" in out.stderr and "block" in out.stderr
        if where != "whole-segment":
            assert seg in out.stderr
        c.start(victim.id)
        w.wait_more(30)
        wait_for(lambda: " repaired: " in read_file(victim.path(".chain/incidents")), 60,
                 "node %d repairing its chain" % victim.id)
    finally:
        w.stop()
    log = victim.log()
    assert "chain damaged" in log and "acceptor store recorded block" in log, log[-2000:]
    incidents = read_file(victim.path(".chain/incidents"))
    assert " found: chain damaged at start: " in incidents, incidents
    assert " moved: " in incidents and "damaged/" in incidents, incidents
    if where != "whole-segment":
        assert seg in incidents, incidents
    # the incident closes once a majority holds the node's head; the node
    # may cast its vote again only a moment later: wait for it
    st = wait_for(lambda: (lambda s: s if s.get("voting") is True else None)(
        node_status(victim)), 30, "node %d voting again" % victim.id)
    assert st.get("healthy") is True, st
    for n in (c.node(leader), other, victim):
        check_acked([w], n)


def test_single_node_cut_chain_is_refused(nodes):
    """`truncate -s 96` of a single node's segment used to give an empty
    store: every acknowledged write gone.  Now the node refuses to start."""
    n = nodes()
    n.start()
    for i in range(20):
        write_file(n.path("k%d" % i), "v%d" % i)
    assert n.stop() == 0
    seg = segments(n.data)[-1]
    os.truncate(seg, 96)
    out = verify(n.data)
    assert out.returncode == 1 and seg in out.stderr and "block 1" in out.stderr, out.stderr
    proc = n.start(expect_ok=False)
    assert proc.wait(timeout=20) != 0
    n.proc = None
    assert seg in n.log() and "offset 0 block 1" in n.log()


# ------------------------------------------------ 2. lost acceptor store

def damage_acceptor(data, how):
    log = os.path.join(data, "acceptor", "log")
    if how == "deleted":
        shutil.rmtree(os.path.join(data, "acceptor"))
        return
    with open(log, "rb") as f:
        buf = f.read()
    used = len(buf.rstrip(b"\0"))
    if how == "emptied":
        os.truncate(log, 0)
    elif how == "truncated":
        os.truncate(log, used // 2)
    else:   # a changed byte in the last record
        with open(log, "r+b") as f:
            f.seek(used - 6)
            f.write(bytes([buf[used - 6] ^ 0x40]))


@pytest.mark.parametrize("how", ["deleted", "emptied", "truncated", "last-record"])
def test_lost_acceptor_store_recovers_before_voting(launched, how):
    """The newest writes are accepted by the leader and one follower only
    (the third node is cut off from the leader).  The follower crashes and
    its disk loses what was not synced: its chain goes back to the last
    durable block, and those writes are left in the acceptor stores of
    the leader and the follower.  Then the follower's store is lost and
    the leader is paused.  The follower must not vote with what it forgot:
    it says it is recovering and waits; once the leader is back, every
    acknowledged write is on every mount."""
    c = launched(3, extra=TIMEOUT_ARGS)
    leader = c.wait_leader()
    f_id, t_id = followers(c, leader)
    L, F, T = c.node(leader), c.node(f_id), c.node(t_id)
    c.faillink(leader, t_id)
    w = Writers([L], "acc", per_node=4).start()
    w2 = None
    try:
        w.wait_more(300)
        c.kill(f_id)
        w.stop()
        mark = durable_mark(F.data)
        _, ends = record_ends(segments(F.data)[-1])
        F_head = len(ends)
        if mark is None:    # a paxosctl without marks: any earlier block
            mark = max(1, F_head - max(20, F_head // 5))
        cut_chain_to(F.data, mark)
        damage_acceptor(F.data, how)
        out = verify(F.data)
        assert out.returncode == 1 and "acceptor store" in out.stderr, out.stdout + out.stderr
        c.pause(leader)
        try:
            c.start(f_id)
            w2 = Writers([F, T], "acc2").start()
            # F must not vote: with the leader paused, F and T elect nobody
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                st = node_status(F)
                assert st.get("role") != "leader", st
                assert st.get("voting") is False, st
                time.sleep(0.2)
            st = node_status(F)
            assert st["recovering"] and st["recovering"]["needed"] == 2, st
            assert st["recovering"]["promised"] <= 1, st
            why = st["recovering"]["why"]
            assert ("missing" if how == "deleted" else "damaged") in why, why
            assert node_status(T).get("role") != "leader"
        finally:
            c.resume(leader)
        c.fixlink(leader, t_id)
        c.wait_leader(timeout=60)
        wait_for(lambda: node_status(F).get("recovering") is False, 60,
                 "node %d to recover" % f_id)
        assert node_status(F)["voting"] is True
        if w2:
            w2.wait_more(20)
    finally:
        w.stop()
        if w2:
            w2.stop()
    log = F.log()
    assert "casting no vote" in log and "recovered lost acceptor state" in log, log[-3000:]
    for n in (L, F, T):
        check_acked([w, w2], n)
    out = verify(F.data)
    assert out.returncode in (0, 1)   # running node: informative only


def test_single_node_lost_acceptor_store_is_reported(nodes):
    """A cluster of one has nobody to recover from: it goes on with its
    chain and says that writes after the last durable block may be lost."""
    n = nodes()
    n.start()
    for i in range(10):
        write_file(n.path("k%d" % i), "v%d" % i)
    assert n.stop() == 0
    shutil.rmtree(os.path.join(n.data, "acceptor"))
    out = verify(n.data)
    assert out.returncode == 1 and "missing beside a chain" in out.stderr, out.stderr
    n.start()
    assert "acceptor store missing beside a chain" in n.log()
    assert "nobody to ask" in n.log()
    wait_for(lambda: n.status()["recovering"] is False, 20, "the node to go on")
    for i in range(10):
        assert read_file(n.path("k%d" % i)) == "v%d" % i
    write_file(n.path("after"), "ok")


# --------------------------------------------------- 3. rolled back node

def test_rolled_back_follower_does_not_vote(launched, tmp_path):
    """A follower's backing directory is copied while it is stopped; it
    runs on (the third node sees this start), then the third node is cut
    off from the leader and the newest writes are accepted by the leader
    and this follower only.  The leader crashes; the follower is restored
    from the old copy and started.  The third node reports the start it
    saw, which the copy does not know: the follower recovers instead of
    electing a leader with the third node that never saw those writes."""
    c = launched(3, extra=TIMEOUT_ARGS)
    leader = c.wait_leader()
    f_id, t_id = followers(c, leader)
    L, F, T = c.node(leader), c.node(f_id), c.node(t_id)
    w = Writers([L, T], "rb").start()
    w2 = w3 = None
    try:
        w.wait_more(100)
        stop_cleanly(F)
        backup = str(tmp_path / "backup")
        shutil.copytree(F.data, backup, symlinks=True)
        c.start(f_id)
        w.wait_more(100)
        wait_for(lambda: node_status(F).get("voting") is True, 30, "node %d to vote" % f_id)
        w.stop()
        c.faillink(leader, t_id)
        w2 = Writers([L], "rb2", per_node=4).start()
        w2.wait_more(200)
        c.kill(leader)
        w2.stop()
        stop_cleanly(F)
        shutil.rmtree(F.data)
        shutil.copytree(backup, F.data, symlinks=True)
        # the dead leader forgets its side of the cut; heal the third's
        r = subprocess.run([PAXOSCTL, "link", T.data, "heal", str(leader)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        c.start(f_id)
        w3 = Writers([F, T], "rb3").start()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert node_status(F).get("role") != "leader"
            assert node_status(T).get("role") != "leader"
            time.sleep(0.2)
        st = node_status(F)
        assert st["voting"] is False and st["recovering"], st
        assert "older copy" in st["recovering"]["why"], st
        c.start(leader)
        c.wait_leader(timeout=60)
        wait_for(lambda: node_status(F).get("recovering") is False, 60,
                 "node %d to recover" % f_id)
        w3.wait_more(20)
    finally:
        for x in (w, w2, w3):
            if x:
                x.stop()
    assert "restored from an older copy" in F.log()
    assert "node %d started from an older copy" % f_id in T.log()
    for n in (L, F, T):
        check_acked([w, w2, w3], n)


# ----------------------------------------------- 4. a chain from elsewhere

def fill(c, leader, n, prefix):
    for i in range(n):
        write_file(c.node(leader).path("%s%d" % (prefix, i % 40)), "%s %d" % (prefix, i))


@pytest.mark.parametrize("what", ["chain", "whole-directory"])
def test_chain_from_another_cluster_never_counts(launched, what):
    """Another cluster's chain (valid hashes, more blocks) is copied over a
    stopped follower, which is started while the leader is down.  Its
    blocks never count as committed: with only `chain/` replaced the
    acceptor store's durable block differs, so the start finds the chain
    damaged and moves it aside from there (an incident) and recovers; with
    the whole backing directory replaced it starts and is never confirmed
    by a majority.  Either way it votes for nobody, streams nothing, its
    mount serves no read, and the one peer up cannot make it reset; once
    the leader is back it repairs or resets itself and votes.  Every
    acknowledged write stays on the healthy nodes."""
    a = launched(3, extra=TIMEOUT_ARGS)
    b = launched(3, extra=TIMEOUT_ARGS)
    b_leader = b.wait_leader()
    fill(b, b_leader, 250, "phantom")
    leader = a.wait_leader()
    f_id, t_id = followers(a, leader)
    F, T = a.node(f_id), a.node(t_id)
    w = Writers([a.node(leader), T], "fc").start()
    w2 = None
    try:
        w.wait_more(80)
        stop_cleanly(F)
        src = b.node(followers(b, b_leader)[0])
        stop_cleanly(src)
        if what == "chain":
            shutil.rmtree(os.path.join(F.data, "chain"))
            shutil.copytree(os.path.join(src.data, "chain"), os.path.join(F.data, "chain"))
        else:
            keep = os.path.join(F.data, "paxosfs.log")
            log = open(keep, "rb").read() if os.path.exists(keep) else b""
            shutil.rmtree(F.data)
            shutil.copytree(src.data, F.data, ignore=shutil.ignore_patterns(
                "LOCK", "admin.sock", "paxosfs.log"))
            with open(keep, "wb") as f:
                f.write(log)
        w.wait_more(20)
        w.stop()
        a.kill(leader)
        if what == "chain":
            out = verify(F.data)
            assert out.returncode == 1 and "replaced" in out.stderr, out.stderr
        a.start(f_id)
        if what == "chain":
            # the block at the position the acceptor store recorded as
            # durable is another one: damage found at start, the chain
            # from there and the acceptor log moved aside, recovering
            log = F.log()
            assert "differs from the one the acceptor store recorded" in log, log[-2000:]
            assert " found: chain damaged at start: " in read_file(F.path(".chain/incidents"))
        w2 = Writers([T], "fc2").start()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            st = node_status(F)
            assert st.get("role") != "leader" and st.get("voting") is False, st
            assert node_status(T).get("role") != "leader"
            # one peer's word never makes it throw its history away
            assert st.get("integrity", {}).get("incidents", 0) == (
                1 if what == "chain" else 0), st
            time.sleep(0.2)
        st = node_status(F)
        if what != "chain":
            assert st["confirmed"] is False, st
            assert st["reads"].startswith("waiting"), st
        else:
            # what is left of its chain (nothing: the foreign blocks were
            # in the segment moved aside) is no history to vouch for
            assert st["chain_head"]["index"] == 0, st
        # its mount serves nothing from the foreign chain
        try:
            got = read_file(F.path("phantom1"))
        except OSError as e:
            # no leader is up (it was killed): refused at once
            assert e.errno in (errno.ETIMEDOUT, errno.EIO, errno.ENOENT,
                               errno.EHOSTUNREACH), e
        else:
            raise AssertionError("node %d served %r from a foreign chain" % (f_id, got))
        a.start(leader)
        a.wait_leader(among=(leader, t_id), majority=True, timeout=60)
        if w2:
            w2.wait_more(20)
            # both others hold other blocks: a majority, so it resets
            wait_for(lambda: node_status(F).get("voting") is True, 60,
                     "node %d to reset itself and vote" % f_id)
            incidents = read_file(F.path(".chain/incidents"))
            assert "chain_diverged" in incidents or what == "chain", incidents
            w2.wait_more(20)
            # the foreign directory's record of other nodes' starts went
            # with its history: no healthy node is taken for rolled back
            for k in (leader, t_id):
                assert "restored from an older copy" not in a.node(k).log()
    finally:
        w.stop()
        if w2:
            w2.stop()
    for k in (leader, t_id):
        n = a.node(k)
        check_acked([w, w2], n)
        names = call_with_deadline(lambda: os.listdir(n.mnt), 20)
        assert names is not None and not any(x.startswith("phantom") for x in names), names


# ----------------------------------------------------- 5. forged catch-up

def send_as_member(c, node, frame, done, what):
    """Send `frame` to `node` over a connection with the cluster key, as a
    member would (in pieces, as nodes send frames (net/wire.h), and as one
    message), then wait until done() holds."""
    zmq = pytest.importorskip("zmq")
    with open(c.info()["key"]) as fh:
        fields = dict(l.split(": ", 1) for l in fh.read().splitlines() if ": " in l)
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_publickey = fields["public"].strip().encode()
        s.curve_secretkey = fields["secret"].strip().encode()
        s.curve_serverkey = fields["public"].strip().encode()
        s.connect("tcp://127.0.0.1:%d" % node.port)
        for part in hostile.both_forms(frame):
            s.send(part)
        wait_for(done, 20, what)
    finally:
        ctx.destroy(linger=0)


def forged_catchup(to, leader_id, ballot, slot, key, value):
    """A CATCHUP frame (net/wire.c PAXOS layout) claiming to come from the
    leader, carrying one chosen BATCH entry: PUT key=value."""
    op = bytes([1]) + struct.pack("<H", len(key)) + key + struct.pack("<I", len(value)) + value
    batch = struct.pack("<I", 1) + struct.pack("<QQQI", 0x5eed, 1, 1, len(op)) + op
    entry = struct.pack("<QQIQBI", slot, ballot["round"], ballot["node"],
                        int(time.time() * 1000), 1, len(batch)) + batch
    body = struct.pack("<BII", 10, leader_id, to)                  # PX_MSG_CATCHUP
    body += struct.pack("<QI", ballot["round"], ballot["node"])
    body += struct.pack("<QQQ", slot, slot, 0)                     # slot, commit, aux
    body += struct.pack("<QI", 0, 0) + struct.pack("<Q", 0) + bytes(32)
    body += struct.pack("<QI", 0, 0)                               # no lease
    body += struct.pack("<II", 1, 0) + entry
    return b"PXFS" + bytes([2, 1]) + struct.pack("<HI", 0, len(body)) + body


def test_forged_catchup_is_not_installed(launched):
    """A CATCHUP sent with the cluster key and the leader's id and ballot
    offers a follower a value nobody proposed for its next slot.  The
    follower checks it against the hashes the other members hold, does not
    install it, counts the drop, and its mount never shows the value."""
    pytest.importorskip("zmq")
    c = launched(3, extra=TIMEOUT_ARGS)
    leader = c.wait_leader()
    f = c.node(followers(c, leader)[0])
    w = Writers([c.node(leader)], "fg").start()
    w.wait_more(50)
    w.stop()
    wait_for(lambda: node_status(f)["commit_index"] == node_status(c.node(leader))["commit_index"],
             20, "the follower to catch up")
    st = node_status(f)
    send_as_member(c, f, forged_catchup(
        f.id, leader, st["ballot"], st["commit_index"] + 1, b"forged",
        b"nobody proposed this\n"),
        lambda: node_status(f).get("catchup_dropped", 0) >= 1,
        "the forged catch-up to be dropped")
    w2 = Writers([c.node(leader), f], "fg2").start()
    try:
        w2.wait_more(50)
    finally:
        w2.stop()
    assert "dropped a catch-up" in f.log()
    for n in c.nodes:
        with pytest.raises(FileNotFoundError):
            read_file(n.path("forged"))
        check_acked([w, w2], n)
        assert node_status(n)["voting"] is True


def start_report(frm, subject, counter, at, block8):
    """A CHAIN_HEAD frame (net/wire_frames.c) carrying a START report
    (node/node_int.h NODE_HEAD_START) of kind 1: node `frm` says it saw
    start `counter` of node `subject`, made from a chain holding block
    `at` whose hash begins with `block8` (integrity.c invariant 5)."""
    h = struct.pack("<QIB3x", 0x0123456789abcdef, subject, 1)
    h += struct.pack("<Q", at) + block8
    body = struct.pack("<IQ", frm, (1 << 63) | counter) + h
    return hostile.frame(6, body)


def test_start_report_from_another_chain_is_not_judged(launched):
    """A member reports a start of a follower that its store never knew
    (as a node on another cluster's directory does), naming a block its
    chain holds that the follower's differs from.  Before, the report was
    judged because the member's chain agreed with the follower's, and the
    follower went into recovery as if restored from an older copy; with
    two nodes recovering a cluster of three has no leader.  The report
    is dropped, counted and logged; the follower keeps voting."""
    pytest.importorskip("zmq")
    c = launched(3, extra=TIMEOUT_ARGS)
    leader = c.wait_leader()
    f_id, t_id = followers(c, leader)
    F = c.node(f_id)
    fill(c, leader, 20, "sr")
    wait_for(lambda: node_status(F)["commit_index"] >= 20 and
             node_status(F)["voting"] is True, 20, "node %d to vote" % f_id)
    st = node_status(F)
    send_as_member(c, F, start_report(t_id, f_id, st["start"] + 5, 1, os.urandom(8)),
                   lambda: node_status(F).get("start_reports_dropped", 0) >= 1,
                   "the report from another chain to be dropped")
    w = Writers([c.node(leader), F], "sr2").start()
    try:
        w.wait_more(30)
    finally:
        w.stop()
    st = node_status(F)
    assert st["recovering"] is False and st["voting"] is True, st
    assert "node %d reported this node's start %d from a chain that differs at block 1" % (
        t_id, st["start"] + 5) in F.log()
    for n in c.nodes:
        check_acked([w], n)


# ----------------------------------------------- 6. diverged node, reads

def test_diverged_node_serves_no_reads_and_resets_itself(launched):
    """Node 3 writes history of its own (alone, as a cluster of one), then
    rejoins.  Its chain differs from the block both others hold: its mount
    never serves its own values (reads wait or fail until it is repaired),
    it moves that history to DIR/damaged/<incident>/ (kept: it holds
    writes it acknowledged alone), starts over empty, catches up from the
    others and then serves their values, while writes go on elsewhere.
    (Before, it abstained until its directory was wiped.)"""
    c = launched(3, extra=("--commit-timeout-ms", "2000"))
    leader = c.wait_leader()
    for i in range(5):
        write_file(c.node(leader).path("k%d" % i), "v%d" % i)
    n3 = c.node(3 if leader != 3 else 2)
    stop_cleanly(n3)
    solo_log = os.path.join(c.dir, "solo.log")
    with open(solo_log, "wb") as log:
        solo = subprocess.Popen([os.path.join(c.info()["bin"], "paxosfs"), "--id", str(n3.id),
                                 "--data", n3.data, "-f", n3.mnt],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: solo.poll() is not None or os.path.exists(n3.path(".status")),
                 20, "solo mount")
        assert solo.poll() is None, read_file(solo_log)
        write_file(n3.path("fork"), "only here")
        write_file(n3.path("k1"), "changed only here")
    finally:
        subprocess.run(["fusermount3", "-u", n3.mnt], capture_output=True)
        try:
            solo.wait(timeout=20)
        finally:
            if solo.poll() is None:
                solo.kill()
                solo.wait(timeout=20)
    w = Writers([c.node(leader)], "dv").start()
    try:
        w.wait_more(30)
        c.start(n3.id)
        # never its own values: a read waits, fails, or (once repaired)
        # gives the cluster's
        deadline = time.monotonic() + 60
        while True:
            try:
                got = read_file(n3.path("k1"))
            except OSError as e:
                assert e.errno in (errno.ETIMEDOUT, errno.EIO, errno.EHOSTUNREACH), e
            else:
                assert got == "v1", got
                break
            assert time.monotonic() < deadline, "node %d never served again" % n3.id
        with pytest.raises(FileNotFoundError):
            read_file(n3.path("fork"))
        w.wait_more(30)
    finally:
        w.stop()
    for k in (1, 2, 3):
        check_acked([w], c.node(k))
        assert read_file(c.node(k).path("k1")) == "v1"
    wait_for(lambda: node_status(n3).get("voting") is True, 30, "node %d voting" % n3.id)
    incidents = read_file(n3.path(".chain/incidents"))
    assert "chain_diverged" in incidents and " repaired: " in incidents, incidents
    kept = glob.glob(os.path.join(n3.data, "damaged", "*", "chain", "seg-*.blk"))
    assert kept, incidents
    # the solo history, with the write only this node acknowledged, is kept
    blob = b"".join(open(f, "rb").read() for f in kept)
    assert b"only here" in blob


# ----------------------------------------------- 7. a private directory

def test_backing_directory_is_private(launched, nodes):
    """Whoever creates it (tools/cluster, paxosfs), the backing directory
    is 0700 and every file in it 0600: no other local user reads a value."""
    c = launched(3)
    write_file(c.node(1).path("secret"), "value")
    for n in c.nodes:
        assert os.stat(n.data).st_mode & 0o777 == 0o700, n.data
        for root, dirs, files in os.walk(n.data):
            for d in dirs:
                assert os.stat(os.path.join(root, d)).st_mode & 0o777 == 0o700, d
            for name in files:
                path = os.path.join(root, name)
                assert os.stat(path).st_mode & 0o077 == 0, "%s is %o" % (
                    path, os.stat(path).st_mode & 0o777)
    # a directory made by someone else with the usual umask is tightened
    n = nodes()
    os.makedirs(n.data, mode=0o755)
    os.chmod(n.data, 0o755)
    old = os.umask(0)
    try:
        n.start()
    finally:
        os.umask(old)
    write_file(n.path("k"), "v")
    assert os.stat(n.data).st_mode & 0o777 == 0o700
    for seg in segments(n.data):
        assert os.stat(seg).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(n.data, "acceptor", "log")).st_mode & 0o777 == 0o600

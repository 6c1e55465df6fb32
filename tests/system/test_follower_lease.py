"""Follower leases (docs/design.md "Follower leases"): a follower that
serves reads holds a lease from the leader and answers them from its own
state, without a message; every read stays linearizable across mounts,
and a holder cut off from the leader never answers with a value older
than a write that returned elsewhere.
"""
import errno
import os
import threading
import time

from conftest import read_file, wait_for, write_file


def followers(c):
    leader = c.wait_leader()
    return c.node(leader), [c.node(k) for k in (1, 2, 3) if k != leader]


def hold_lease(node, timeout=20.0):
    """Read on `node` until it holds a follower lease; its .status then."""
    def holds():
        os.path.exists(node.path("no-such-key"))   # a lookup: a read
        st = node.status()
        return st if st.get("follower_lease") else None
    return wait_for(holds, timeout, "node %d to hold a follower lease" % node.id)


def test_lease_reads_see_every_mounts_change_at_once(launched):
    """Through a lease holder's mount, a stat, an open and read, or an
    exclusive create that starts after another mount's write, create or
    unlink returned reflects it, every time, and the lease served them.
    A's writes commit on the leader's own vote (consensus/leader.c
    invariant 9) before the leader knows: the leader's mount reads them at
    once too."""
    c = launched(3)
    leader, (a, b) = followers(c)
    before = hold_lease(b)["lease_reads"]
    for i in range(25):
        name = "lease-%d" % i
        write_file(a.path(name), "a%d" % i)                 # created on A
        assert read_file(leader.path(name)) == "a%d" % i, i
        assert os.stat(b.path(name)).st_size == len("a%d" % i), i
        assert read_file(b.path(name)) == "a%d" % i, i
        write_file(leader.path(name), "leader%d" % i)       # replaced on L
        assert read_file(b.path(name)) == "leader%d" % i, i
        os.unlink(a.path(name))                              # removed on A
        try:
            os.stat(b.path(name))
            raise AssertionError("%s still there on B after its unlink" % name)
        except FileNotFoundError:
            pass
        fd = os.open(b.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"b%d" % i)                         # created on B
        finally:
            os.close(fd)
        assert read_file(a.path(name)) == "b%d" % i, i
        assert read_file(leader.path(name)) == "b%d" % i, i
    st = b.status()
    assert st["lease_reads"] >= before + 25, st
    assert st["role"] == "follower"
    assert a.status()["vote_commits"] > 0


def test_a_cut_off_lease_holder_never_reads_an_older_value(launched):
    """The leader stops hearing from a lease holder: its next write waits
    at most for the holder's grant to end, and from then on the holder
    answers a read of the key with the new value or an error, never the
    value before it; once the link is back it reads the new value."""
    c = launched(3)
    leader, (a, b) = followers(c)
    write_file(leader.path("k"), "old")
    hold_lease(b)
    assert read_file(b.path("k")) == "old"
    c.faillink(leader.id, b.id)
    t0 = time.monotonic()
    write_file(leader.path("k"), "new")       # commits with A alone
    assert time.monotonic() - t0 < 10.0
    got = []

    def reader():
        try:
            got.append(read_file(b.path("k")))
        except OSError as e:
            got.append(e.errno)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(30)
    assert got, "the read on the cut-off holder did not return within 30 s"
    assert got[0] in ("new", errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.EAGAIN), got
    c.fixlink(leader.id, b.id)

    def reads_new():
        try:
            return read_file(b.path("k")) == "new"
        except OSError as e:   # cut off a while: it fails at once until
            assert e.errno in (errno.EHOSTUNREACH, errno.ETIMEDOUT), e
            return False       # it hears from the leader again
    wait_for(reads_new, 30, "B to read the new value")

"""Lookups in one directory run in parallel (fs/session.c invariant 3).

libfuse 3.14 never asks the kernel for parallel directory operations, so
the kernel used to take every LOOKUP of a directory one at a time, each
waiting until the one before it was answered.  A lookup on a mount that
does not lead waits for a read point from the leader; one that waits long
(no leader reachable) held up every other lookup in that directory, even
of names the mount answers by itself.  Connections go to 127.0.0.1 only."""
import json
import os
import threading
import time

from conftest import read_file, wait_for, write_file


def status(path):
    with open(os.path.join(path, ".status")) as f:
        return json.load(f)


def test_every_mount_asks_for_parallel_lookups(launched):
    """Server mounts and a client-only mount say they run lookups in
    parallel (the kernel here offers it)."""
    c = launched(3, launcher_args=["--clients", 1])
    for n in c.nodes:
        assert status(n.mnt)["parallel_lookups"] is True, n.id
    cm = c.info()["clients"][0]["mnt"]
    assert status(cm)["parallel_lookups"] is True


def test_a_waiting_lookup_does_not_hold_up_the_directory(launched):
    """A follower's lookup of a name it never looked up waits for a read
    point while the leader and the other follower are paused (it ends
    with ETIMEDOUT after the read deadline).  Meanwhile a lookup in the
    same directory that the mount answers by itself (.chain, never looked
    up there either) returns at once.  Before, it waited behind the first
    one: 9.8 s."""
    c = launched(3)
    leader = c.wait_leader()
    follower, other = [k for k in (1, 2, 3) if k != leader]
    f = c.node(follower)
    write_file(c.node(leader).path("waits"), "w\n")
    assert status(f.mnt)["waiting_reads"] == 0   # .status looked up once
    c.pause(leader)
    c.pause(other)
    box = {}

    def stat_waits():
        t0 = time.monotonic()
        try:
            os.stat(f.path("waits"))
            box["result"] = "ok"
        except OSError as e:
            box["result"] = e.errno
        box["took"] = time.monotonic() - t0

    t = threading.Thread(target=stat_waits, daemon=True)
    try:
        t.start()
        # the first lookup is pending in the node (no leader answers)
        wait_for(lambda: status(f.mnt)["waiting_reads"] >= 1, 5,
                 "the lookup waiting for a read point", interval=0.02)
        assert t.is_alive(), box
        t0 = time.monotonic()
        os.stat(f.path(".chain"))
        took = time.monotonic() - t0
        assert took < 1.0, "a lookup of .chain waited %.1fs behind another lookup (%s)" % (
            took, box)
        assert t.is_alive(), "the first lookup ended before the check: %s" % box
    finally:
        c.resume(leader)
        c.resume(other)
    t.join(60)
    assert not t.is_alive()
    # with the others back the name is there again
    wait_for(lambda: read_file(f.path("waits")) == "w\n", 30, "the key on the follower")


"""Wall-clock steps: timers run on CLOCK_MONOTONIC, the wall clock only
stamps entries.  Every node of a real 3-node cluster runs with
build/clockshift.so preloaded, which shifts its CLOCK_REALTIME by what the
test writes into a file (tests/tools/clockshift.c), so the clock of the
running nodes is stepped without touching the machine's."""
import os

import pytest

from conftest import BUILD, read_file, wait_for, write_file

HOUR_MS = 3600 * 1000


@pytest.fixture
def shifted(launched, tmp_path):
    """A 3-node cluster whose wall clock follows the returned shift file."""
    lib = os.path.join(BUILD, "clockshift.so")
    assert os.path.exists(lib), "build %s first (make)" % lib
    shift = str(tmp_path / "clock-shift-ms")
    write_file(shift, "0")
    # an ASan build wants its runtime first; the shim does not allocate
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    c = launched(3, env={"PAXOSFS_CLOCK_SHIFT_FILE": shift, "LD_PRELOAD": lib,
                         "ASAN_OPTIONS": asan.lstrip(":")})
    return c, shift


def ballot(node):
    st = node.status()
    return (st["ballot"]["round"], st["ballot"]["node"])


def write_many(c, node_id, prefix, count):
    for i in range(count):
        write_file(c.node(node_id).path("%s%d" % (prefix, i)), "v%d\n" % i)


def test_forward_step_fires_no_election(shifted):
    c, shift = shifted
    leader = c.wait_leader()
    write_many(c, leader, "before", 5)
    b = ballot(c.node(leader))
    write_file(shift, str(HOUR_MS))          # every node, one hour ahead
    # writes keep committing on every mount for a while after the step ...
    for k in range(1, 4):
        write_many(c, k, "after%d-" % k, 20)
    for k in range(1, 4):
        assert read_file(c.node(k).path("after3-19")) == "v19\n"
    # ... with no election: the old code saw every timer expire at once
    assert ballot(c.node(leader)) == b, "the clock step caused an election"
    assert c.views_leader([1, 2, 3]) == leader
    # the commit time follows the wall clock (an hour ahead now; the shim
    # reads its file every 20 ms, the last write is far later than that)
    st = os.stat(c.node(leader).path("after3-19"))
    before = os.stat(c.node(leader).path("before0"))
    assert st.st_mtime - before.st_mtime > 3500


def test_backward_step_leaves_timers_running(shifted):
    c, shift = shifted
    leader = c.wait_leader()
    write_many(c, leader, "before", 5)
    before = os.stat(c.node(leader).path("before4")).st_mtime
    write_file(shift, str(-HOUR_MS))         # every node, one hour back
    write_many(c, leader, "after", 5)
    # a commit time never goes back on a node: it stands still instead
    assert os.stat(c.node(leader).path("after4")).st_mtime >= before
    # elections still run: the leader dies, the others elect a new one
    # (with timers on the wall clock they were frozen for the hour)
    c.kill(leader)
    others = [k for k in (1, 2, 3) if k != leader]
    new = c.wait_leader(among=others, exclude=[leader], timeout=20)
    write_many(c, new, "failover", 5)
    for k in others:
        wait_for(lambda: os.path.exists(c.node(k).path("failover4")), 10,
                 "failover4 on node %d" % k)

"""The loop's busy polling (node/loop.c invariant 5) and the answers it
writes after the requests it reads (invariant 4, fs/reply.c).

Busy polling spends CPU to save wake-ups, so what matters most is when it
must not run: an idle node sleeps, and a node whose mount has nothing in
flight polls only just after a request.  Connections go to 127.0.0.1
only."""
import os
import subprocess
import threading
import time

from conftest import PAXOSFS, read_file, wait_for, write_file

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User plus system CPU time of every thread of process `pid`."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def writers(mnt, prefix, threads, per_thread):
    """Write new keys from `threads` threads at once; returns the errors."""
    errors = []

    def run(t):
        try:
            for i in range(per_thread):
                write_file(os.path.join(mnt, "%s-%d-%d" % (prefix, t, i)), "v%d\n" % i)
        except OSError as e:
            errors.append(e)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "writers did not finish in 60 s"
    return errors


def test_an_idle_cluster_does_not_poll(launched):
    """After a burst of concurrent writes, every node goes back to sleep:
    over two idle seconds each node uses under 10% of a CPU and its busy
    poll count stays put.  A loop that kept polling would use a whole
    CPU."""
    c = launched(3)
    leader = c.wait_leader()
    mnt = c.node(leader).mnt
    assert writers(mnt, "burst", 16, 20) == []
    st = c.node(leader).status()
    assert st["busy_poll"]["us"] == 50
    assert st["busy_poll"]["polls"] > 0, st["busy_poll"]
    time.sleep(0.5)   # the burst's last commit notices and acknowledgements
    before = {n.id: (cpu_seconds(n.pid), n.status()["busy_poll"]["polls"])
              for n in c.nodes}
    t0 = time.monotonic()
    time.sleep(2.0)
    took = time.monotonic() - t0
    for n in c.nodes:
        cpu = cpu_seconds(n.pid) - before[n.id][0]
        polls = n.status()["busy_poll"]["polls"] - before[n.id][1]
        assert cpu < 0.10 * took, (n.id, cpu, took)
        # reading .status is a few requests, each may poll once after it
        assert polls <= 16, (n.id, polls)


def test_busy_polling_can_be_turned_off(launched):
    """--busy-poll-us 0: the same burst, and no wait ever polls first;
    every write still lands and its answer arrives."""
    c = launched(3, extra=["--busy-poll-us", "0"])
    leader = c.wait_leader()
    mnt = c.node(leader).mnt
    assert writers(mnt, "off", 16, 10) == []
    for t in range(16):
        assert read_file(os.path.join(mnt, "off-%d-9" % t)) == "v9\n"
    for n in c.nodes:
        st = n.status()
        assert st["busy_poll"] == {"us": 0, "polls": 0, "found": 0}, (n.id, st["busy_poll"])


def test_queued_answers_all_arrive(launched):
    """Concurrent writers through a follower's mount and the leader's: the
    answers of their WRITEs, FLUSHes and RELEASEs go through the queue
    (answers_queued grows by at least three per file), none is refused by
    the kernel, and every close() returned only once its write committed:
    the other mount reads each value at once."""
    c = launched(3)
    leader = c.wait_leader()
    follower = next(k for k in (1, 2, 3) if k != leader)
    for k, other in ((leader, follower), (follower, leader)):
        n = c.node(k)
        before = n.status()["answers_queued"]
        assert writers(n.mnt, "q%d" % k, 8, 25) == []
        st = n.status()
        assert st["answers_queued"] - before >= 3 * 8 * 25, (k, st["answers_queued"], before)
        assert st["answers_failed"] == 0
        for t in range(8):
            for i in (0, 24):
                assert read_file(c.node(other).path("q%d-%d-%d" % (k, t, i))) == "v%d\n" % i


def test_a_bad_busy_poll_value_is_refused(tmp_path):
    for bad in ("-1", "abc", "10001"):
        r = subprocess.run([PAXOSFS, "--id", "1", "--data", str(tmp_path / "d"),
                            "--busy-poll-us", bad, str(tmp_path / "m")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (bad, r.stderr)
        assert "--busy-poll-us needs microseconds from 0 (off) to 10000" in r.stderr, r.stderr

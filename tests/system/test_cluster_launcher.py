"""tools/cluster, the local cluster launcher, driven as a user would drive it:
up/status/leader/down, kill/start, pause/resume, refusals and clean teardown.

Every test brings its cluster down with `tools/cluster down` at teardown
(also when the test fails) and then checks that no mount and no process of
that cluster is left.  The three-node tests skip until paxosfs has cluster
mode (`--peers` in its --help).
"""
import json
import os
import signal
import subprocess

import pytest

from conftest import (BUILD, CLUSTER, PAXOSCTL, PAXOSFS, SUSPICIOUS, cpu_list, is_mounted,
                      mounts_under, pid_alive, pids_under, read_file, unmount, wait_for,
                      write_file)

COMMANDS = ("up", "down", "kill", "start", "pause", "resume", "status",
            "leader", "faillink", "fixlink")


def _help(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return r.stdout + r.stderr


HAS_PEERS = "--peers" in _help([PAXOSFS, "--help"])
PAXOSCTL_COMMANDS = {line.split()[0] for line in _help([PAXOSCTL, "help"]).splitlines()
                     if line.startswith("  ") and line.split()}
needs_peers = pytest.mark.skipif(
    not HAS_PEERS, reason="%s --help does not mention --peers: no cluster mode yet" % PAXOSFS)


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return None


class Cluster:
    """One cluster directory and the launcher commands run against it."""

    def __init__(self, base):
        self.dir = str(base)

    def run(self, *args, timeout=120):
        argv = [CLUSTER, args[0], self.dir] + [str(a) for a in args[1:]]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, timeout=120):
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, "cluster %s failed (%d):\n%s%s" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
        return r

    def up(self, n, *extra):
        argv = ["up", n, "--bin", BUILD, "--timeout", 60]
        return self.ok(*(argv + (["--"] + list(extra) if extra else [])))

    def info(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            return json.load(f)

    def node(self, k):
        return next(n for n in self.info()["nodes"] if n["id"] == k)

    def pid(self, k):
        return self.node(k)["pid"]

    def mnt(self, k):
        return self.node(k)["mnt"]

    def path(self, k, name):
        return os.path.join(self.mnt(k), name)

    def status(self, k):
        return json.loads(read_file(self.path(k, ".status")))

    def leader(self):
        r = self.run("leader", timeout=30)
        return int(r.stdout) if r.returncode == 0 else None


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        stop_and_check(c)


def stop_and_check(c):
    """down, then make sure nothing of the cluster is left (not named
    teardown: pytest would take that for a module teardown hook)."""
    recorded = []
    if os.path.exists(os.path.join(c.dir, "cluster.json")):
        recorded = c.info()["nodes"]
        r = c.run("down", timeout=120)
    else:
        r = None
    # safety net so one failure does not leak into the next tests
    leftovers = pids_under(c.dir)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    stale = mounts_under(c.dir)
    for m in stale:
        unmount(m)
    for n in recorded:
        log = os.path.join(n["data"], "paxosfs.log")
        if os.path.exists(log):
            text = read_file(log, "r")
            for bad in SUSPICIOUS:
                assert bad not in text, "node %d logged %r:\n%s" % (n["id"], bad, text[-4000:])
    assert r is None or r.returncode == 0, "down failed:\n%s%s" % (r.stdout, r.stderr)
    assert not leftovers, "processes left after down: %s" % leftovers
    assert not stale, "mounts left after down: %s" % stale


# ------------------------------------------------------------ one node

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = subprocess.run([CLUSTER, command, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.startswith("usage:") and "DIR" in r.stdout


def test_up_status_leader_down_one_node(cluster):
    r = cluster.up(1)
    assert "leader: node 1" in r.stdout and "down" in r.stdout
    node = cluster.node(1)
    assert node["port"] > 0 and node["state"] == "running"
    with open(os.path.join(node["data"], "LOCK")) as f:
        assert int(f.readline()) == node["pid"]
    assert pid_alive(node["pid"]) and is_mounted(node["mnt"])
    st = cluster.status(1)
    assert st["id"] == 1 and st["role"] == "leader" and st["leader"] == 1

    write_file(cluster.path(1, "key"), "hi\n")
    assert read_file(cluster.path(1, "key")) == "hi\n"
    lines = cluster.ok("status").stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "pid", "state"]
    row = lines[1].split()
    assert row[:5] == ["1", str(node["pid"]), "alive", "leader", "1"]
    assert int(row[7]) == cluster.status(1)["chain_head"]["index"] >= 1
    assert cluster.leader() == 1

    r = cluster.ok("down")
    assert "stopped node 1" in r.stdout
    assert not is_mounted(node["mnt"]) and not pid_alive(node["pid"])
    assert cluster.node(1)["state"] == "down"


def test_kill_then_start_keeps_data(cluster):
    cluster.up(1)
    write_file(cluster.path(1, "k"), "before crash")
    old = cluster.pid(1)
    head = cluster.status(1)["chain_head"]

    cluster.ok("kill", 1)
    assert not pid_alive(old) and not is_mounted(cluster.mnt(1))
    assert cluster.node(1)["state"] == "down"
    assert cluster.ok("status").stdout.splitlines()[1].split()[:3] == ["1", "-", "dead"]
    assert cluster.leader() is None
    # killing a dead node again is harmless
    cluster.ok("kill", 1)

    cluster.ok("start", 1)
    new = cluster.pid(1)
    assert new != old and pid_alive(new) and is_mounted(cluster.mnt(1))
    assert read_file(cluster.path(1, "k")) == "before crash"
    # a restarted node may commit an entry of its own when it takes office
    restarted = cluster.status(1)["chain_head"]["index"]
    assert restarted >= head["index"]
    write_file(cluster.path(1, "k2"), "after")
    assert cluster.status(1)["chain_head"]["index"] == restarted + 1
    # the same command line as at up: same data directory and port
    argv = cluster.node(1)["argv"]
    assert os.path.realpath(argv[0]) == os.path.realpath(PAXOSFS)
    assert argv[1:5] == ["--id", "1", "--data", cluster.node(1)["data"]]


def test_start_refuses_a_running_node(cluster):
    cluster.up(1)
    pid = cluster.pid(1)
    r = cluster.run("start", 1)
    assert r.returncode == 1 and "already running" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cluster.pid(1) == pid and pid_alive(pid)


def test_pause_resume(cluster):
    cluster.up(1)
    pid = cluster.pid(1)
    cluster.ok("pause", 1)
    assert proc_state(pid) in ("T", "t")
    # status must not hang on the stopped node's mount
    row = cluster.ok("status", timeout=20).stdout.splitlines()[1].split()
    assert row[:3] == ["1", str(pid), "paused"]
    assert cluster.leader() is None
    r = cluster.run("start", 1)
    assert r.returncode == 1 and "resume" in r.stderr

    cluster.ok("resume", 1)
    assert proc_state(pid) not in ("T", "t", None)
    write_file(cluster.path(1, "after-resume"), "x")
    assert read_file(cluster.path(1, "after-resume")) == "x"
    assert cluster.leader() == 1

    # down must also stop a paused node (teardown checks nothing is left)
    cluster.ok("pause", 1)
    cluster.ok("down")
    assert not pid_alive(pid)


def test_double_up_is_refused(cluster):
    cluster.up(1)
    pid = cluster.pid(1)
    r = cluster.run("up", 1, "--bin", BUILD)
    assert r.returncode == 1
    assert "already running" in r.stderr and "down" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert cluster.pid(1) == pid and pid_alive(pid)


def test_down_is_idempotent_and_leaves_nothing(cluster):
    cluster.up(1)
    pid, mnt = cluster.pid(1), cluster.mnt(1)
    cluster.ok("down")
    cluster.ok("down")
    assert not pid_alive(pid) and not is_mounted(mnt)
    assert pids_under(cluster.dir) == [] and mounts_under(cluster.dir) == []
    # and after a kill, down still succeeds
    cluster.ok("up", "--bin", BUILD)
    cluster.ok("kill", 1)
    cluster.ok("down")
    assert pids_under(cluster.dir) == [] and mounts_under(cluster.dir) == []


def test_up_again_restarts_on_the_same_data_and_port(cluster):
    cluster.up(1)
    write_file(cluster.path(1, "kept"), "yes")
    port = cluster.node(1)["port"]
    cluster.ok("down")
    r = cluster.ok("up", "--bin", BUILD)
    assert "restarted" in r.stdout
    assert cluster.node(1)["port"] == port
    assert read_file(cluster.path(1, "kept")) == "yes"
    r = cluster.run("up", 3, "--bin", BUILD)
    assert r.returncode == 1 and "already running" in r.stderr


def test_failed_node_start_is_reported(cluster):
    r = cluster.run("up", 1, "--bin", BUILD, "--", "--no-such-option")
    assert r.returncode == 1
    assert "no-such-option" in r.stderr and "down" in r.stderr
    assert cluster.node(1)["pid"] is None


def test_bad_arguments_are_one_line_errors(cluster, tmp_path):
    for args in (("kill", 1), ("status",), ("leader",)):
        r = subprocess.run([CLUSTER, args[0], str(tmp_path)] + [str(a) for a in args[1:]],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "no cluster" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = cluster.run("up", 0, "--bin", BUILD)
    assert r.returncode == 1 and "between 1 and" in r.stderr
    os.makedirs(os.path.join(cluster.dir, "junk"))
    r = cluster.run("up", 1, "--bin", BUILD)
    assert r.returncode == 1 and "not empty" in r.stderr
    os.rmdir(os.path.join(cluster.dir, "junk"))
    r = cluster.run("up", 1, "--bin", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "paxosfs" in r.stderr
    cluster.up(1)
    for args in (("kill", 2), ("faillink", 1, 1), ("faillink", 1, 2)):
        r = cluster.run(*args)
        assert r.returncode == 1, args
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cluster.run("kill", "one")
    assert r.returncode == 2 and "integer" in r.stderr
    if not HAS_PEERS:
        r = cluster.run("up", 3, "--bin", BUILD)
        assert r.returncode == 1


@pytest.mark.skipif(HAS_PEERS, reason="paxosfs has cluster mode")
def test_three_nodes_need_cluster_mode(cluster):
    r = cluster.run("up", 3, "--bin", BUILD)
    assert r.returncode == 1 and "--peers" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------ three nodes

def agreed(cluster, ids):
    views = [cluster.status(k) for k in ids]
    leaders = {v["leader"] for v in views}
    if len(leaders) != 1 or 0 in leaders:
        return None
    (leader,) = leaders
    return leader if cluster.status(leader)["role"] == "leader" else None


@needs_peers
def test_three_nodes_agree_and_replicate(cluster):
    r = cluster.up(3)
    leader = agreed(cluster, (1, 2, 3))
    assert leader in (1, 2, 3)
    assert "leader: node %d" % leader in r.stdout
    assert cluster.leader() == leader
    argv = cluster.node(2)["argv"]
    peers = argv[argv.index("--peers") + 1]
    assert peers == ",".join("%d=127.0.0.1:%d" % (n["id"], n["port"])
                             for n in cluster.info()["nodes"])
    if cluster.info()["key"]:
        assert argv[argv.index("--key") + 1] == cluster.info()["key"]

    write_file(cluster.path(1, "key"), "hi\n")
    # linearizable reads: visible on every mount once close() returned
    assert read_file(cluster.path(2, "key")) == "hi\n"
    assert read_file(cluster.path(3, "key")) == "hi\n"
    rows = cluster.ok("status").stdout.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["alive"] * 3


@needs_peers
def test_up_leaves_the_cpus_alone_unless_asked(cluster):
    cluster.ok("up", 3, "--bin", BUILD, "--timeout", 60)
    allowed = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    for k in (1, 2, 3):
        assert "--leader-cpus" not in cluster.node(k)["argv"]
        st = cluster.status(k)
        assert st["leader_cpus"] == ""
        # the kernel writes ranges; compare as sets
        assert cpu_list(st["cpus"]) == set(os.sched_getaffinity(0)), (k, st["cpus"], allowed)


@needs_peers
def test_kill_leader_elects_a_new_one(cluster):
    cluster.up(3)
    old = cluster.leader()
    assert old
    cluster.ok("kill", old)
    new = wait_for(lambda: (lambda x: x if x and x != old else None)(cluster.leader()),
                   timeout=30, what="a new leader after killing node %d" % old)
    assert new != old
    live = [k for k in (1, 2, 3) if k != old]
    write_file(cluster.path(live[0], "after-failover"), "ok")
    assert read_file(cluster.path(live[1], "after-failover")) == "ok"

    cluster.ok("start", old)
    wait_for(lambda: agreed(cluster, (1, 2, 3)), timeout=30, what="the old leader to rejoin")
    assert read_file(cluster.path(old, "after-failover")) == "ok"


@needs_peers
def test_faillink_isolates_and_fixlink_restores(cluster):
    cluster.up(3)
    r = cluster.run("faillink", 1, 2)
    if "link" not in PAXOSCTL_COMMANDS:
        assert r.returncode == 1 and "failed" in r.stderr
        return
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 -> 2 drop: exit 0" in r.stdout and "2 -> 1 drop: exit 0" in r.stdout
    cluster.ok("fixlink", 1, 2)

    # cut the leader off from both followers: they elect one of their own
    old = cluster.leader()
    others = [k for k in (1, 2, 3) if k != old]
    for k in others:
        cluster.ok("faillink", old, k)

    def majority_leader():
        r = cluster.run("leader", "--majority", timeout=30)
        return int(r.stdout) if r.returncode == 0 and int(r.stdout) != old else None
    assert wait_for(majority_leader, timeout=30, what="a leader without node %d" % old) in others
    for k in others:
        cluster.ok("fixlink", old, k)
    wait_for(lambda: agreed(cluster, (1, 2, 3)), timeout=30,
             what="all three nodes to agree after fixlink")


@needs_peers
def test_pause_leader_then_resume(cluster):
    cluster.up(3)
    old = cluster.leader()
    cluster.ok("pause", old)
    # the paused node is skipped, the two others must agree on a new leader
    new = wait_for(lambda: (lambda x: x if x and x != old else None)(cluster.leader()),
                   timeout=30, what="a leader while node %d is paused" % old)
    row = cluster.ok("status", timeout=20).stdout.splitlines()[old].split()
    assert row[:3] == [str(old), str(cluster.pid(old)), "paused"]
    cluster.ok("resume", old)
    assert wait_for(lambda: agreed(cluster, (1, 2, 3)), timeout=30,
                    what="the resumed node to follow") == new


# ------------------------------------------------------------ leader agreement rule

def load_launcher():
    """tools/cluster as a module (its main() runs only as a script); no
    bytecode cache is written next to it."""
    import importlib.machinery
    import importlib.util
    import sys
    loader = importlib.machinery.SourceFileLoader("cluster_launcher", CLUSTER)
    spec = importlib.util.spec_from_loader("cluster_launcher", loader)
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


def views(*triples):
    """{id: (status, why)} from (id, role, leader) or (id, None, why)."""
    out = {}
    for k, role, leader in triples:
        out[k] = ((None, leader) if role is None
                  else ({"id": k, "role": role, "leader": leader}, None))
    return out


NODES3 = [{"id": k} for k in (1, 2, 3)]


def test_leader_rule_needs_every_live_node_to_agree():
    launcher = load_launcher()
    rule = launcher.agreed_leader
    assert rule(NODES3, views((1, "follower", 2), (2, "leader", 2), (3, "follower", 2))) == (2, None)
    # one node still follows an old leader
    leader, why = rule(NODES3, views((1, "follower", 2), (2, "leader", 2), (3, "follower", 1)))
    assert leader is None and "disagree" in why
    # named leader does not know it yet
    leader, why = rule(NODES3, views((1, "follower", 2), (2, "candidate", 2), (3, "follower", 2)))
    assert leader is None and "role=candidate" in why
    # a dead node is ignored, a silent live node is not
    assert rule(NODES3, views((1, None, "dead"), (2, "leader", 2), (3, "follower", 2))) == (2, None)
    leader, why = rule(NODES3, views((1, None, "reading .status timed out"),
                                     (2, "leader", 2), (3, "follower", 2)))
    assert leader is None and "did not answer" in why
    # a lone survivor is no quorum, whatever it believes
    leader, why = rule(NODES3, views((1, None, "dead"), (2, "leader", 2), (3, None, "dead")))
    assert leader is None and "1 of 3" in why
    leader, why = rule(NODES3, views((1, "follower", 0), (2, "candidate", 0), (3, "follower", 0)))
    assert leader is None and "no leader" in why


def test_leader_rule_majority_tolerates_one_dissenter():
    rule = load_launcher().agreed_leader
    seen = views((1, "leader", 1), (2, "leader", 2), (3, "follower", 2))
    assert rule(NODES3, seen)[0] is None
    assert rule(NODES3, seen, majority=True) == (2, None)
    seen = views((1, "follower", 1), (2, None, "timed out"), (3, "follower", 3))
    assert rule(NODES3, seen, majority=True)[0] is None


def test_every_election_is_logged(launched):
    """The first leader logs that it leads; once it is killed, the node
    that takes over logs it too, with a higher ballot."""
    c = launched(3)
    first = c.wait_leader()
    line = "paxosfs: node %d: leading, ballot " % first
    wait_for(lambda: line in c.node(first).log(), 10, "the leader's log line")
    ballot = int(c.node(first).log().split(line)[1].split(".")[0])
    c.kill(first)
    second = c.wait_leader(exclude=(first,))
    line2 = "paxosfs: node %d: leading, ballot " % second
    wait_for(lambda: line2 in c.node(second).log(), 10, "the new leader's log line")
    assert int(c.node(second).log().split(line2)[-1].split(".")[0]) > ballot

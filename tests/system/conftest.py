"""Helpers for paxosfs system tests: real processes, real FUSE mounts.

Single-node tests start paxosfs themselves (Node); multi-node tests run
their cluster through the launcher tools/cluster (LaunchedCluster).  Every
node a test starts is stopped by PID and its mount unmounted at teardown,
also when the test fails.  Waiting is always a condition polled against a
deadline, never a fixed sleep.
"""
import errno
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PAXOSFS_BUILD", os.path.join(ROOT, "build"))
PAXOSFS = os.path.join(BUILD, "paxosfs")
PAXOSCTL = os.path.join(BUILD, "paxosctl")
SUSPICIOUS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
              "Segmentation fault", "Assertion", "double free")


def wait_for(cond, timeout=20.0, what="condition", interval=0.005):
    """Poll cond() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1] == path:
                return True
    return False


def unmount(path):
    if is_mounted(path):
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True)
        if r.returncode != 0 and is_mounted(path):
            subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)


def mount_root_fd(mnt):
    """An fd of the mount root, or None while nothing is mounted.  Load
    generators work through it (dir_fd=): once the node dies the fd fails
    with ENOTCONN instead of silently reaching the bare mountpoint
    directory underneath."""
    try:
        fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    if os.fstat(fd).st_dev == os.stat(os.path.dirname(mnt)).st_dev:
        os.close(fd)      # the bare directory, not the mount
        return None
    return fd


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purposes
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Node:
    """One paxosfs node process with its data directory and mount."""

    def __init__(self, base, node_id=1, extra_args=()):
        self.base = str(base)
        self.id = node_id
        self.data = os.path.join(self.base, "n%d" % node_id, "data")
        self.mnt = os.path.join(self.base, "n%d" % node_id, "mnt")
        self.logpath = os.path.join(self.base, "n%d" % node_id, "node.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.pid = None
        os.makedirs(self.mnt, exist_ok=True)

    def path(self, name):
        return os.path.join(self.mnt, name)

    def root_fd(self):
        return mount_root_fd(self.mnt)

    def command(self, foreground=True):
        cmd = [PAXOSFS, "--id", str(self.id), "--data", self.data]
        if foreground:
            cmd.append("-f")
        return cmd + self.extra_args + [self.mnt]

    def start(self, expect_ok=True, timeout=20.0):
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.pid = self.proc.pid
        if not expect_ok:
            return self.proc
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("paxosfs exited with %s:\n%s" % (self.proc.returncode, self.log()))
            return is_mounted(self.mnt) and os.path.exists(self.path(".status"))
        wait_for(ready, timeout, "mount of node %d" % self.id)
        return self.proc

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def status(self):
        with open(self.path(".status")) as f:
            return json.load(f)

    def stop(self, timeout=20.0):
        """Clean stop: unmount, then wait for the process to exit."""
        unmount(self.mnt)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=timeout)
                raise AssertionError("node %d did not stop after unmount" % self.id)
            rc = self.proc.returncode
            self.proc = None
            return rc
        return None

    def kill9(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
            self.proc = None
        unmount(self.mnt)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        unmount(self.mnt)
        if self.pid and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def nodes(tmp_path):
    """Factory of nodes; all are stopped and unmounted at teardown."""
    made = []

    def make(node_id=1, extra_args=()):
        n = Node(tmp_path, node_id, extra_args)
        made.append(n)
        return n

    yield make
    for n in made:
        n.cleanup()
    # like libfuse's own suite: suspicious daemon output fails the test
    for n in made:
        text = n.log()
        daemon_log = os.path.join(n.data, "paxosfs.log")
        if os.path.exists(daemon_log):
            with open(daemon_log, errors="replace") as f:
                text += f.read()
        for bad in SUSPICIOUS:
            assert bad not in text, "node %d logged %r:\n%s" % (n.id, bad, text[-4000:])


@pytest.fixture
def node(nodes):
    n = nodes()
    n.start()
    # a new leader commits an entry of its own ballot before anything else
    wait_for(lambda: n.status()["role"] == "leader" and n.status()["commit_index"] >= 1,
             20, "the node to lead")
    return n


def chain_head(n):
    return n.status()["chain_head"]["index"]


def cpu_list(text):
    """A kernel CPU list ("0-2,5") as a set."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def read_file(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write_file(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


class MountClient:
    """Reads and writes files of one node's mount through a root fd that is
    re-opened after the node comes back (see Node.root_fd)."""

    def __init__(self, node):
        self.node = node
        self.fd = None

    def _root(self):
        if self.fd is None:
            self.fd = self.node.root_fd()
        if self.fd is None:
            raise OSError(errno.ENOTCONN, "node %d is not mounted" % self.node.id)
        return self.fd

    def _failed(self, e):
        if e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EBADF, errno.ENODEV):
            if self.fd is not None:
                try:
                    os.close(self.fd)
                except OSError:
                    pass
            self.fd = None

    def write(self, name, data):
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644,
                         dir_fd=self._root())
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            self._failed(e)
            raise

    def read(self, name):
        try:
            fd = os.open(name, os.O_RDONLY, dir_fd=self._root())
            try:
                chunks = []
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    chunks.append(b)
                return b"".join(chunks)
            finally:
                os.close(fd)
        except OSError as e:
            self._failed(e)
            raise

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ------------------------------------------------------------ launched clusters
#
# Multi-node tests run their cluster with tools/cluster, as users do: `up`
# starts it, `kill`/`start`/`pause`/`resume`/`faillink`/`fixlink` break and
# mend it, `leader` names the leader, and `down` stops it at teardown (by
# the pids the launcher recorded, never by name).  What the launcher does not
# print (a node's pid, port, mount, log) is read from DIR/cluster.json.

CLUSTER = os.path.join(ROOT, "tools", "cluster")

# The command runner: a child started before any mount of the cluster
# exists, which runs each launcher command for us.  Why not fork from the
# test process itself: client threads hold files open on the mounts, and a
# forked child closes its copies of them (close_fds, or close-on-exec at
# exec); every close of a FUSE file sends FLUSH and waits for the answer.
# While a node is paused that answer never comes, so the child that was to
# run `tools/cluster resume` would hang before it ran.  The runner holds no
# file of any mount, so its children start at once.  The test process
# itself starts programs (fusermount3, lincheck) only while no node is
# paused.
_RUNNER = r"""
import json, os, subprocess, sys
for line in sys.stdin:
    req = json.loads(line)
    try:
        r = subprocess.run(req["argv"], capture_output=True, text=True,
                           timeout=req["timeout"], stdin=subprocess.DEVNULL,
                           env=dict(os.environ, **req.get("env", {})))
        out = {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
    except subprocess.TimeoutExpired:
        out = {"rc": None, "stdout": "", "stderr": "timed out after %ss" % req["timeout"]}
    except OSError as e:
        out = {"rc": 127, "stdout": "", "stderr": str(e)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class CommandRunner:
    """Runs commands in the runner child, one at a time (a lock orders
    callers from several threads), each with a deadline.  A runner child
    that died or stopped answering is replaced at the next command."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _RUNNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, close_fds=True)

    def _discard(self):
        """Stop our own runner child, by its handle."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc.stdout.close()

    def run(self, argv, timeout, env=None):
        """argv with `env` added to the runner's environment."""
        with self.lock:
            if self.proc.poll() is not None:
                self._discard()
                self._spawn()
            try:
                self.proc.stdin.write(json.dumps({"argv": argv, "timeout": timeout,
                                                  "env": env or {}}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                line = ""
            else:
                # the runner enforces timeout; the margin covers its own start-up
                ready, _, _ = select.select([self.proc.stdout], [], [], timeout + 30)
                line = self.proc.stdout.readline() if ready else None
            if not line:
                self._discard()
                self._spawn()
                raise AssertionError("the command runner %s during %s" % (
                    "exited" if line == "" else "did not answer in %ss" % (timeout + 30), argv))
        out = json.loads(line)
        if out["rc"] is None:
            raise subprocess.TimeoutExpired(argv, timeout)
        return subprocess.CompletedProcess(argv, out["rc"], out["stdout"], out["stderr"])

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()      # our own child, by its handle
            self.proc.wait(timeout=30)
        self.proc.stdout.close()


def call_with_deadline(fn, timeout=5.0):
    """fn() in a daemon thread: its value, or None if it raised OSError or
    ValueError or did not return in time (a paused node's mount blocks
    every request until the node resumes or is unmounted)."""
    box = {}

    def run():
        try:
            box["v"] = fn()
        except (OSError, ValueError) as e:
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return box.get("v")


def mounts_under(path, fuse_only=False):
    """Mount points below path; with fuse_only, only FUSE mounts (a node's
    mount, not a file system a test put a backing directory on)."""
    found = []
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1].startswith(path + "/") and (
                    not fuse_only or fields[2].startswith("fuse")):
                found.append(fields[1])
    return found


def pids_under(path):
    """Live processes whose command line mentions path."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if path in cmd and pid_alive(int(entry)):
            found.append(int(entry))
    return found


class ClusterNode:
    """Node K of a launched cluster as the tests see it: its mount (file
    I/O, MountClient) and what cluster.json records about it.  The pid is
    re-read on every use: `start` records a new one."""

    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        rec = cluster.record(node_id)
        self.mnt, self.data, self.port = rec["mnt"], rec["data"], rec["port"]
        self.logpath, self.start_log = rec["log"], rec["start_log"]

    @property
    def pid(self):
        return self.cluster.record(self.id)["pid"]

    def path(self, name):
        return os.path.join(self.mnt, name)

    def root_fd(self):
        return mount_root_fd(self.mnt)

    def status(self):
        """.status read directly: only for a node known to be running."""
        with open(self.path(".status")) as f:
            return json.load(f)

    def status_within(self, timeout=5.0):
        """.status, or None if unreadable within timeout (paused, dead)."""
        return call_with_deadline(self.status, timeout)

    def log(self):
        text = ""
        for path in (self.start_log, self.logpath):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text


class LaunchedCluster:
    """A cluster directory and the tools/cluster commands run against it."""

    def __init__(self, base, runner, env=None):
        self.dir = str(base)
        self.runner = runner
        self.env = env or {}      # added to the environment of every command
        self.nodes = []

    def run(self, *args, timeout=120):
        argv = [CLUSTER, args[0], self.dir] + [str(a) for a in args[1:]]
        return self.runner.run(argv, timeout, self.env)

    def ok(self, *args, timeout=120):
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, "tools/cluster %s failed (%d):\n%s%s" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
        return r

    def up(self, size, extra=(), timeout=60, launcher_args=()):
        """`up DIR SIZE --bin BUILD LAUNCHER_ARGS -- EXTRA`: returns once
        every mount works and all nodes agree on one leader."""
        argv = ["up", size, "--bin", BUILD, "--timeout", timeout] + list(launcher_args)
        r = self.ok(*(argv + (["--"] + list(extra) if extra else [])), timeout=timeout + 60)
        self.nodes = [ClusterNode(self, rec["id"]) for rec in self.info()["nodes"]]
        return r

    def info(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            return json.load(f)

    def record(self, node_id):
        return next(n for n in self.info()["nodes"] if n["id"] == node_id)

    def node(self, node_id):
        """By id (after `add`/`remove` ids are no longer 1..N)."""
        return next(n for n in self.nodes if n.id == node_id)

    def kill(self, node_id):
        self.ok("kill", node_id)

    def start(self, node_id):
        self.ok("start", node_id, "--timeout", 30, timeout=90)

    def pause(self, node_id):
        self.ok("pause", node_id)

    def resume(self, node_id):
        self.ok("resume", node_id)

    def faillink(self, a, b):
        self.ok("faillink", a, b)

    def fixlink(self, a, b):
        self.ok("fixlink", a, b)

    def leader(self, majority=False):
        """`tools/cluster leader [--majority]`: the agreed leader or None."""
        r = self.run(*(["leader"] + (["--majority"] if majority else [])), timeout=30)
        return int(r.stdout) if r.returncode == 0 else None

    def views_leader(self, among, exclude=()):
        """The leader that every node in among names in its own .status,
        if that node says it leads and is not in exclude; else None.  Read
        in-process (cheap to poll), unlike `tools/cluster leader`."""
        leaders = set()
        for k in among:
            st = self.node(k).status_within()
            if not st:
                return None
            leaders.add(st.get("leader"))
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if not leader or leader in exclude:
            return None
        st = self.node(leader).status_within()
        return leader if st and st.get("role") == "leader" and st.get("leader") == leader else None

    def wait_leader(self, among=(), exclude=(), majority=False, timeout=30.0):
        """Wait until the nodes in among (default: every node not in
        exclude) name one leader outside exclude in their own .status, that
        node says it leads, and `tools/cluster leader [--majority]` names
        it too.  The views are polled in-process (cheap); the launcher is
        asked once they agree."""
        ids = list(among) or [n.id for n in self.nodes if n.id not in exclude]

        def agreed():
            leader = self.views_leader(ids, exclude)
            if leader is None:
                return None
            return leader if self.leader(majority) == leader else None
        return wait_for(agreed, timeout, "a leader named by nodes %s%s and tools/cluster" % (
            ids, " other than %s" % list(exclude) if exclude else ""), interval=0.02)

    def bring_down(self):
        """Teardown: `down`, then check that no mount and no process of the
        cluster is left and no node logged a crash.  Stale mounts are
        unmounted (never deleted through); processes are only reported."""
        if not os.path.exists(os.path.join(self.dir, "cluster.json")):
            return
        records = self.info()["nodes"]
        try:
            r = self.run("down", timeout=120)
            failed = "" if r.returncode == 0 else r.stdout + r.stderr
        except (AssertionError, subprocess.TimeoutExpired) as e:
            failed = str(e)
        stale = mounts_under(self.dir, fuse_only=True)
        for m in stale:
            unmount(m)
        left = pids_under(self.dir)
        assert not failed, "tools/cluster down failed:\n%s" % failed
        assert not stale, "mounts left after down: %s" % stale
        assert not left, "processes left after down: %s" % left
        for rec in records:
            for path in (rec["start_log"], rec["log"]):
                if os.path.exists(path):
                    text = read_file(path)
                    for bad in SUSPICIOUS:
                        assert bad not in text, "node %d logged %r in %s:\n%s" % (
                            rec["id"], bad, path, text[-4000:])


@pytest.fixture
def launched(tmp_path):
    """Factory of clusters started with `tools/cluster up DIR N`; each is
    brought down with `tools/cluster down DIR` at teardown, also when the
    test failed."""
    made = []
    runner = CommandRunner()

    def make(size=3, extra=(), launcher_args=(), env=None):
        c = LaunchedCluster(tmp_path / ("cluster%d" % len(made)), runner, env)
        made.append(c)
        c.up(size, extra, launcher_args=launcher_args)
        return c

    try:
        yield make
    finally:
        errors = []
        try:
            for c in made:
                try:
                    c.bring_down()
                except AssertionError as e:
                    errors.append(str(e))
        finally:
            runner.close()
        assert not errors, "\n".join(errors)

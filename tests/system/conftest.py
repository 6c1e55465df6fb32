"""Helpers for paxosfs system tests: real processes, real FUSE mounts.

Every node a test starts is stopped by PID and its mount unmounted with
fusermount3 -u at teardown, also when the test fails.  Waiting is always a
condition polled against a deadline, never a fixed sleep.
"""
import errno
import json
import os
import signal
import subprocess
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
        """An fd of the mount root, or None while nothing is mounted.  Load
        generators work through it (dir_fd=): once the node dies the fd
        fails with ENOTCONN instead of silently reaching the bare
        mountpoint directory underneath."""
        try:
            fd = os.open(self.mnt, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        if os.fstat(fd).st_dev == os.stat(os.path.dirname(self.mnt)).st_dev:
            os.close(fd)      # the bare directory, not the mount
            return None
        return fd

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

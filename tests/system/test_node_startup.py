"""Start-up and shutdown edge cases of one paxosfs node: a member of a
three-node cluster started while its peers are down (it never accepts
anything, then is unmounted), and --key files that are not regular files
(refused at once, never waited on).  Under `make asan` these run against
the ASan/UBSan build (PAXOSFS_BUILD=build-asan), so a sanitizer report at
shutdown fails the exit-status check and the log check of the `nodes`
fixture."""
import os
import socket
import stat
import subprocess

import pytest

from conftest import PAXOSCTL, PAXOSFS, is_mounted, read_file


def free_ports(n):
    """n distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def keygen(path):
    r = subprocess.run([PAXOSCTL, "keygen", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return str(path)


def test_lone_member_of_three_serves_status_and_stops_cleanly(nodes, tmp_path):
    """Node 1 of a three-node cluster with nodes 2 and 3 down: it mounts,
    .status answers (no leader, nothing committed), and an unmount stops
    it with exit status 0.  It never accepted a value, so its acceptor
    store is empty when the shutdown compacts it."""
    ports = free_ports(3)
    peers = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
    key = keygen(tmp_path / "cluster.key")
    n = nodes(1, ["--peers", peers, "--key", key])
    n.start()
    st = n.status()
    assert st["id"] == 1
    assert st["role"] != "leader"
    assert st["commit_index"] == 0
    rc = n.stop()
    assert rc == 0, "node exited with %s:\n%s" % (rc, n.log()[-4000:])
    assert not is_mounted(n.mnt)


def run_node_with_key(tmp_path, key):
    """paxosfs --key KEY in the foreground, with a deadline: a hang on the
    key file fails the test (TimeoutExpired kills the child) instead of
    blocking the suite."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    ports = free_ports(3)
    peers = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
    r = subprocess.run([PAXOSFS, "--id", "1", "--data", str(tmp_path / "data"),
                        "--peers", peers, "--key", str(key), "-f", str(mnt)],
                       capture_output=True, text=True, timeout=20)
    assert not is_mounted(str(mnt))
    return r


def test_key_that_is_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "cluster.key"
    os.mkfifo(fifo, 0o600)
    r = run_node_with_key(tmp_path, fifo)
    assert r.returncode == 2
    assert "not a regular file (a FIFO)" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_key_that_is_a_device_is_refused(tmp_path):
    r = run_node_with_key(tmp_path, "/dev/null")
    assert r.returncode == 2
    assert "/dev/null: not a regular file (a character device)" in r.stderr, r.stderr


def test_key_readable_by_others_is_a_warning(nodes, tmp_path):
    """A loose mode is reported (once, one line) but the node starts: the
    key still authenticates the cluster, and the fix is a chmod."""
    key = keygen(tmp_path / "cluster.key")
    os.chmod(key, 0o644)
    ports = free_ports(3)
    peers = ",".join("%d=127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(ports))
    n = nodes(1, ["--peers", peers, "--key", key])
    n.start()
    assert n.stop() == 0
    log = n.log()
    assert log.count("paxosfs: warning: %s is accessible by group or others (mode 644)" % key) == 1, log


def test_keygen_force_replaces_only_a_regular_file(tmp_path):
    """Shown with a FIFO of our own: a device node is refused the same way
    (unit test), but a test must not risk replacing /dev/null."""
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    r = subprocess.run([PAXOSCTL, "keygen", "--force", str(fifo)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert "is not a regular file; refusing to replace it" in r.stderr, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    # a regular file is replaced, as before
    key = keygen(tmp_path / "cluster.key")
    old = read_file(key)
    r = subprocess.run([PAXOSCTL, "keygen", "--force", key], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert read_file(key) != old


@pytest.mark.parametrize("value", ["0", "3", "2048", "-4", "x"])
def test_writes_in_flight_must_be_a_power_of_two_up_to_1024(tmp_path, value):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([PAXOSFS, "--data", str(tmp_path / "data"),
                        "--max-writes-in-flight", value, "-f", str(mnt)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "--max-writes-in-flight needs a power of two from 1 to 1024" in r.stderr, r.stderr
    assert not is_mounted(str(mnt))

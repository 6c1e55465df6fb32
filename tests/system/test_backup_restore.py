"""Offline backup and restore with paxosctl: a stopped single node's
backing directory is backed up (refused while the node runs), restored
into a new directory that a node serves with every acknowledged value,
and a damaged backup file is refused with file and offset before anything
is created."""
import os
import re
import subprocess

from conftest import PAXOSCTL, Node, read_file, write_file


def ctl(*args):
    return subprocess.run([PAXOSCTL] + list(args), capture_output=True, text=True,
                          timeout=120)


def test_backup_and_restore_offline(nodes, tmp_path):
    n = nodes()
    n.start()
    values = {"k%d" % i: "value %d\n" % (i * i) for i in range(40)}
    for k, v in values.items():
        write_file(n.path(k), v)
    backup = str(tmp_path / "node1.pxb")

    # a running node is not backed up offline
    out = ctl("backup", n.data, backup)
    assert out.returncode == 2 and "running" in out.stderr, out.stderr
    assert not os.path.exists(backup)
    assert n.stop() == 0

    out = ctl("backup", n.data, backup)
    assert out.returncode == 0, out.stderr
    m = re.search(r"head hash ([0-9a-f]{64})", out.stdout)
    assert m, out.stdout
    head_hash = m.group(1)

    restored = Node(tmp_path / "restored", 1)
    try:
        # a target that is not empty is refused
        os.makedirs(restored.data)
        with open(os.path.join(restored.data, "other"), "w") as f:
            f.write("x")
        out = ctl("restore", backup, restored.data)
        assert out.returncode == 2 and "not empty" in out.stderr, out.stderr
        os.unlink(os.path.join(restored.data, "other"))

        out = ctl("restore", backup, restored.data)
        assert out.returncode == 0, out.stderr
        assert head_hash in out.stdout
        out = ctl("verify", restored.data)
        assert out.returncode == 0, out.stderr
        assert head_hash in out.stdout

        restored.start()
        for k, v in values.items():
            assert read_file(restored.path(k)) == v
        write_file(restored.path("after"), "restored node writes\n")
        assert restored.stop() == 0
        assert ctl("verify", restored.data).returncode == 0
    finally:
        restored.cleanup()


def test_damaged_backup_is_refused(nodes, tmp_path):
    n = nodes()
    n.start()
    for i in range(10):
        write_file(n.path("k%d" % i), "some value %d" % i)
    assert n.stop() == 0
    backup = str(tmp_path / "b.pxb")
    assert ctl("backup", n.data, backup).returncode == 0
    with open(backup, "rb") as f:
        data = bytearray(f.read())
    pos = data.find(b"some value 7")
    assert pos > 0
    data[pos] ^= 0x20
    with open(backup, "wb") as f:
        f.write(data)
    target = str(tmp_path / "target")
    out = ctl("restore", backup, target)
    assert out.returncode == 1, out.stdout + out.stderr
    m = re.search(r"damaged: (\S+) offset (\d+) block (\d+)", out.stderr)
    assert m and m.group(1) == backup, out.stderr
    assert int(m.group(2)) <= pos
    assert not os.path.exists(target)

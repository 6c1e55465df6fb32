"""A single-node paxosfs on a real FUSE mount: file semantics, .chain,
.status, bad input, restart, crash, torn tail and tamper detection."""
import errno
import stat
import glob
import os
import random
import re
import subprocess
import threading
import time

import pytest

from conftest import (PAXOSCTL, PAXOSFS, MountClient, chain_head, is_mounted, pid_alive,
                      read_file, unmount, wait_for, write_file)


def expect_errno(code, fn, *args):
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, "expected %s, got %s" % (
        errno.errorcode[code], errno.errorcode.get(info.value.errno))


# ------------------------------------------------------------ basics

def test_write_then_read(node):
    write_file(node.path("greeting"), "hello\n")
    assert read_file(node.path("greeting")) == "hello\n"
    assert os.stat(node.path("greeting")).st_size == 6
    assert "greeting" in os.listdir(node.mnt)


def test_shell_redirect_is_one_commit(node):
    before = chain_head(node)
    subprocess.run(["sh", "-c", "echo value > '%s'" % node.path("k")], check=True)
    assert subprocess.run(["cat", node.path("k")], capture_output=True,
                          check=True).stdout == b"value\n"
    # the shell's dup2+close before the write must not commit an empty file
    assert chain_head(node) == before + 1
    subprocess.run(["sh", "-c", "echo other > '%s'" % node.path("k")], check=True)
    assert read_file(node.path("k")) == "other\n"
    assert chain_head(node) == before + 2


def test_close_returns_after_commit(node):
    fd = os.open(node.path("c"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, b"abc")
    head = chain_head(node)
    os.close(fd)
    assert chain_head(node) == head + 1
    assert node.status()["commit_index"] == head + 1


def test_mtime_is_commit_time(node):
    before = time.time()
    write_file(node.path("m"), "x")
    after = time.time()
    st = os.stat(node.path("m"))
    assert before - 0.01 <= st.st_mtime <= after + 0.01
    block = read_file(node.path(".chain/%010d" % chain_head(node)))
    ms = int(re.search(r"time: .*\((\d+)\)", block).group(1))
    assert abs(st.st_mtime * 1000 - ms) < 1.0


def test_touch_truncate_remove(node):
    p = node.path("t")
    subprocess.run(["touch", p], check=True)
    assert os.stat(p).st_size == 0 and read_file(p) == ""
    subprocess.run(["truncate", "-s", "5", p], check=True)
    assert read_file(p, "rb") == b"\0" * 5
    write_file(p, "abcdef")
    os.truncate(p, 2)
    assert read_file(p) == "ab"
    os.unlink(p)
    assert not os.path.exists(p)
    expect_errno(errno.ENOENT, os.unlink, p)
    expect_errno(errno.ENOENT, os.stat, p)


def test_touch_existing_updates_mtime(node):
    p = node.path("tm")
    write_file(p, "keep")
    m1 = os.stat(p).st_mtime_ns
    wait_for(lambda: time.time_ns() > m1 + 20_000_000, 5, "clock to move")
    subprocess.run(["touch", p], check=True)
    assert read_file(p) == "keep"
    assert os.stat(p).st_mtime_ns > m1


def test_offset_writes_and_append(node):
    p = node.path("o")
    write_file(p, "hello world")
    with open(p, "r+") as f:
        f.seek(6)
        f.write("WORLD")
    assert read_file(p) == "hello WORLD"
    with open(p, "a") as f:
        f.write("!")
    assert read_file(p) == "hello WORLD!"
    subprocess.run(["sh", "-c", "echo more >> '%s'" % p], check=True)
    assert read_file(p) == "hello WORLD!more\n"
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"Z", 20)
    os.close(fd)
    assert read_file(p, "rb") == b"hello WORLD!more\n\0\0\0Z"


def test_rename_is_atomic_replace(node):
    write_file(node.path("a"), "A")
    write_file(node.path("b"), "B")
    os.rename(node.path("a"), node.path("b"))
    assert read_file(node.path("b")) == "A"
    assert not os.path.exists(node.path("a"))
    expect_errno(errno.ENOENT, os.rename, node.path("a"), node.path("c"))


def test_readers_never_see_partial_values(node):
    p = node.path("atomic")
    values = [b"a" * 3000, b"b" * 3000]
    write_file(p, values[0], "wb")
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            data = read_file(p, "rb")
            if data not in values:
                bad.append(data[:20])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            with open(p, "wb") as f:
                f.write(values[i % 2][:1000])
                f.write(values[i % 2][1000:])
    finally:
        stop.set()
        t.join()
    assert bad == []


# ---------------------------------------------------- .chain and .status

def test_chain_listing_matches_writes(node):
    start = chain_head(node)
    for i in range(5):
        write_file(node.path("key%d" % i), "value-%d\n" % i)
    names = os.listdir(node.path(".chain"))
    head = chain_head(node)
    assert head == start + 5
    assert names == sorted(names)
    assert names == ["%010d" % i for i in range(1, head + 1)]
    for i in range(5):
        name = "%010d" % (start + 1 + i)
        text = read_file(node.path(".chain/" + name))
        assert "index: %d" % (start + 1 + i) in text
        assert 'key="key%d"' % i in text and "len=8" in text
        assert os.stat(node.path(".chain/" + name)).st_size == len(text.encode())
    # each block links to the one before it
    prev = None
    for name in names:
        text = read_file(node.path(".chain/" + name))
        h = re.search(r"^hash: ([0-9a-f]{64})", text, re.M).group(1)
        p = re.search(r"^prev: ([0-9a-f]{64})", text, re.M).group(1)
        if prev is not None:
            assert p == prev
        prev = h
    assert prev == node.status()["chain_head"]["hash"]


def test_status_json(node):
    write_file(node.path("s"), "1")
    st = node.status()
    assert st["id"] == 1
    assert st["role"] == "leader"
    assert st["commit_index"] == st["chain_head"]["index"] >= 1
    assert re.fullmatch(r"[0-9a-f]{64}", st["chain_head"]["hash"])


def test_chain_becomes_durable_in_the_background(node):
    """The chain is synced off the loop every 200 ms: the synced index
    catches up with the head while writes go on being served."""
    for i in range(20):
        write_file(node.path("bg%d" % i), "v%d" % i)
    head = node.status()["chain_head"]["index"]
    wait_for(lambda: node.status()["chain_synced_index"] >= head, timeout=10.0,
             what="chain_synced_index to reach %d" % head)
    write_file(node.path("after"), "x")   # the loop still serves
    assert read_file(node.path("after")) == "x"


# ------------------------------------------------------------ bad input

def test_name_too_long(node):
    expect_errno(errno.ENAMETOOLONG, open, node.path("x" * 256), "w")
    write_file(node.path("y" * 255), "ok")
    assert read_file(node.path("y" * 255)) == "ok"


def test_value_too_large_commits_nothing(node):
    write_file(node.path("big"), "old")
    head = chain_head(node)
    fd = os.open(node.path("big"), os.O_WRONLY | os.O_TRUNC)
    written, chunk = 0, b"x" * (1 << 20)
    with pytest.raises(OSError) as info:
        for _ in range(8):                  # 8 MiB, past the 4 MiB bound
            written += os.write(fd, chunk)  # the kernel may write short first
    assert info.value.errno == errno.EFBIG
    assert written <= 4 << 20
    expect_errno(errno.EFBIG, os.close, fd)
    assert chain_head(node) == head
    assert read_file(node.path("big")) == "old"
    write_file(node.path("onemb"), "z" * (1 << 20))
    assert os.stat(node.path("onemb")).st_size == 1 << 20


def test_read_only_views(node):
    write_file(node.path("r"), "1")
    block = node.path(".chain/%010d" % chain_head(node))
    expect_errno(errno.EACCES, open, node.path(".chain/new"), "w")
    expect_errno(errno.EACCES, open, block, "w")
    expect_errno(errno.EACCES, open, node.path(".status"), "w")
    expect_errno(errno.EACCES, os.unlink, block)
    expect_errno(errno.EACCES, os.unlink, node.path(".status"))
    expect_errno(errno.EACCES, os.rename, node.path("r"), node.path(".chain/r"))
    expect_errno(errno.EACCES, os.rename, block, node.path("stolen"))
    expect_errno(errno.EACCES, os.rename, node.path("r"), node.path(".status"))
    expect_errno(errno.EACCES, os.mkdir, node.path(".chain/d"))
    expect_errno(errno.EACCES, os.rmdir, node.path(".chain"))
    expect_errno(errno.EACCES, os.truncate, node.path(".status"), 0)
    expect_errno(errno.EEXIST, os.mkdir, node.path(".chain"))
    assert read_file(node.path("r")) == "1"


def test_unsupported_operations_have_clear_errors(node):
    write_file(node.path("f"), "1")
    expect_errno(errno.EPERM, os.symlink, "f", node.path("l"))
    expect_errno(errno.EPERM, os.link, node.path("f"), node.path("h"))
    expect_errno(errno.EPERM, os.mknod, node.path("dev"), 0o600 | stat.S_IFCHR, 0)
    expect_errno(errno.ENOTDIR, os.stat, node.path("f/x"))


# ------------------------------------------------------------ lifecycle

def test_help_documents_options():
    out = subprocess.run([PAXOSFS, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for opt in ("--id", "--data", "-f", "--log", "--commit-timeout-ms",
                "--attr-timeout", "--entry-timeout", "--leader-cpus",
                "--allow-other", "--debug"):
        assert opt in out.stdout


@pytest.mark.parametrize("args,message", [
    (["--entry-timeout", "-1"], "--entry-timeout needs seconds"),
    (["--entry-timeout", "x"], "--entry-timeout needs seconds"),
    (["--attr-timeout", "nan"], "--attr-timeout needs seconds"),
    (["--leader-cpus", "4096"], "--leader-cpus: bad CPU list"),
    (["--leader-cpus", "0-"], "--leader-cpus: bad CPU range"),
])
def test_bad_option_values_are_one_line_errors(tmp_path, args, message):
    r = subprocess.run([PAXOSFS, "--data", str(tmp_path / "d")] + args + [str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not os.path.exists(tmp_path / "d")


def test_second_node_on_same_data_is_refused(node, nodes):
    other = nodes(node_id=1)
    other.mnt = node.mnt + "-second"
    os.makedirs(other.mnt)
    other.data = node.data
    proc = other.start(expect_ok=False)
    assert proc.wait(timeout=20) != 0
    assert "in use" in other.log()
    assert not is_mounted(other.mnt)
    assert read_file(node.path(".status"))


def test_background_mode_returns_when_ready(nodes):
    n = nodes()
    r = subprocess.run(n.command(foreground=False), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    try:
        assert is_mounted(n.mnt)
        write_file(n.path("bg"), "yes")
        assert read_file(n.path("bg")) == "yes"
        pid = int(read_file(os.path.join(n.data, "LOCK")).strip())
        n.pid = pid
        assert pid_alive(pid)
    finally:
        unmount(n.mnt)
    wait_for(lambda: not pid_alive(pid), 20, "background node to exit")


def test_sigterm_stops_cleanly(node):
    write_file(node.path("x"), "1")
    node.proc.terminate()
    assert node.proc.wait(timeout=20) == 0
    node.proc = None
    wait_for(lambda: not is_mounted(node.mnt), 10, "unmount")


def test_restart_keeps_everything(nodes):
    n = nodes()
    n.start()
    for i in range(20):
        write_file(n.path("k%d" % i), "v%d" % i)
    st = n.status()
    assert n.stop() == 0
    n.start()
    for i in range(20):
        assert read_file(n.path("k%d" % i)) == "v%d" % i
    # the chain continues the old one (a new leader may add a no-op block)
    old = st["chain_head"]
    assert n.status()["chain_head"]["index"] >= old["index"]
    block = read_file(n.path(".chain/%010d" % old["index"]))
    assert "hash: " + old["hash"] in block
    assert n.stop() == 0
    out = subprocess.run([PAXOSCTL, "verify", n.data], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"head index \d+ hash [0-9a-f]{64}", out.stdout)


def test_sigkill_loses_no_acknowledged_write(nodes):
    n = nodes()
    n.start()
    writers, acked, lock = 6, {}, threading.Lock()
    total = [0]
    stop = threading.Event()
    kill_at = random.randint(1000, 1600)

    def writer(w):
        mount = MountClient(n)
        i = 0
        while not stop.is_set():
            key = "w%d-%d" % (w, i % 40)
            try:
                mount.write(key, b"%d" % i)
            except OSError:
                return
            with lock:
                acked[key] = i
                total[0] += 1
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: total[0] >= kill_at, 120, "%d acknowledged writes" % kill_at)
        n.kill9()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert total[0] >= 1000
    n.start()
    for key, i in acked.items():
        got = int(read_file(n.path(key)))
        # the acknowledged value, or a later write that was in flight
        assert got == i or got == i + 40 or got > i, (key, got, i)
        assert got >= i
    assert n.stop() == 0
    out = subprocess.run([PAXOSCTL, "verify", n.data], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def segment_files(data):
    files = sorted(glob.glob(os.path.join(data, "chain", "*")))
    assert files, "no chain segment files under %s" % data
    return files


def test_torn_tail_is_cut(nodes):
    """A torn tail is what a crash leaves of an append that was never
    synced: after the last block the acceptor store recorded as durable.
    It is cut, with a log line, and the chain goes on.  (Cutting a block
    that was durable is damage: test_storage_damage.py.)"""
    n = nodes()
    n.start()
    for i in range(10):
        write_file(n.path("t%d" % i), "v%d" % i)
    head = chain_head(n)
    kept = read_file(n.path(".chain/%010d" % head))
    assert n.stop() == 0
    seg = segment_files(n.data)[-1]
    with open(seg, "rb") as f:
        first = f.read(60)
    with open(seg, "ab") as f:
        f.write(first)      # the start of a record that never got its end
    n.start()
    assert re.search(r"torn tail in .*: cut 60 bytes at offset \d+ back to block %d"
                     % head, n.log())
    # everything before the torn block is intact, and the chain goes on
    assert read_file(n.path(".chain/%010d" % head)) == kept
    for i in range(10):
        assert read_file(n.path("t%d" % i)) == "v%d" % i
    write_file(n.path("after"), "ok")
    assert n.stop() == 0
    assert subprocess.run([PAXOSCTL, "verify", n.data]).returncode == 0


def test_tampering_is_detected(nodes):
    n = nodes()
    n.start()
    for i in range(10):
        write_file(n.path("t%d" % i), "value number %d" % i)
    assert n.stop() == 0
    seg = segment_files(n.data)[-1]
    with open(seg, "rb") as f:
        original = f.read()
    offset = original.find(b"value number 4")
    assert offset > 0
    with open(seg, "r+b") as f:
        f.seek(offset)
        f.write(b"V")
    out = subprocess.run([PAXOSCTL, "verify", n.data], capture_output=True, text=True)
    assert out.returncode == 1
    assert seg in out.stderr and "offset" in out.stderr and "block" in out.stderr
    proc = n.start(expect_ok=False)
    assert proc.wait(timeout=20) != 0
    n.proc = None
    assert not is_mounted(n.mnt)
    log = n.log()
    assert seg in log and "offset" in log and "block" in log
    with open(seg, "r+b") as f:
        f.seek(offset)
        f.write(b"v")
    n.start()
    assert read_file(n.path("t4")) == "value number 4"

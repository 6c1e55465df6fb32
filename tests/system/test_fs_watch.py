"""Watching keys and the chain: user.paxos.version (how many committed
changes made a key's value), across mounts, a restart from a snapshot and
the replay after it."""
import errno
import os
import select
import subprocess
import time

import pytest

from conftest import CommandRunner, LaunchedCluster, read_file, wait_for, write_file

VERSION = "user.paxos.version"


def version(path):
    return int(os.getxattr(path, VERSION))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 3-node cluster for the cross-mount tests of this module."""
    runner = CommandRunner()
    c = LaunchedCluster(tmp_path_factory.mktemp("watch") / "cluster", runner)
    try:
        c.up(3)
        c.wait_leader()
        yield c
    finally:
        try:
            c.bring_down()
        finally:
            runner.close()


def test_version_counts_changes_on_every_mount(cluster):
    a, b, c = (cluster.node(k) for k in (1, 2, 3))
    write_file(a.path("ver-a"), "one")
    assert version(a.path("ver-a")) == 1
    write_file(b.path("ver-a"), "two")
    with open(c.path("ver-a"), "a") as f:
        f.write("three")
    os.chmod(a.path("ver-a"), 0o600)
    os.rename(b.path("ver-a"), b.path("ver-b"))
    for n in (a, b, c):
        assert version(n.path("ver-b")) == 5
    assert VERSION in os.listxattr(a.path("ver-b"))
    # read-only, and a removed and created again key starts over
    with pytest.raises(OSError) as e:
        os.setxattr(a.path("ver-b"), VERSION, b"9")
    assert e.value.errno == errno.EPERM
    os.unlink(a.path("ver-b"))
    write_file(c.path("ver-b"), "new")
    for n in (a, b, c):
        assert version(n.path("ver-b")) == 1
    os.mkdir(a.path("ver-dir"))
    assert version(b.path("ver-dir")) == 1


def test_version_survives_snapshot_and_replay(nodes):
    n = nodes(extra_args=("--snapshot-entries", "40"))
    n.start()
    wait_for(lambda: n.status()["role"] == "leader", 20, "the node to lead")
    for i in range(7):
        write_file(n.path("counted"), "v%d" % i)
    os.chmod(n.path("counted"), 0o640)
    for i in range(100):                      # snapshots are taken
        write_file(n.path("filler%d" % (i % 10)), "x" * i)
    wait_for(lambda: n.status()["snapshot"]["taken"] >= 1, 20, "a snapshot")
    for i in range(3):                        # changes after the snapshot
        write_file(n.path("counted"), "after%d" % i)
    write_file(n.path("late"), "1")
    write_file(n.path("late"), "2")
    assert version(n.path("counted")) == 11
    assert version(n.path("filler3")) == 10
    n.stop()
    n.start()
    assert "restarted from the snapshot at block" in n.log()
    assert version(n.path("counted")) == 11
    assert version(n.path("filler3")) == 10
    assert version(n.path("late")) == 2
    write_file(n.path("counted"), "again")
    assert version(n.path("counted")) == 12
    assert read_file(n.path("counted")) == "again"


# ------------------------------------------------ poll() on an open key

def poll_in(fd, timeout_s):
    p = select.poll()
    p.register(fd, select.POLLIN)
    return [ev for _, ev in p.poll(int(timeout_s * 1000))]


def wait_pollin(fd, deadline_s=20.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        evs = poll_in(fd, min(1.0, max(0.0, end - time.monotonic())))
        if evs and evs[0] & select.POLLIN:
            return evs[0]
    raise AssertionError("no POLLIN within %.0f s" % deadline_s)


def test_poll_reports_a_new_value_written_on_another_mount(cluster):
    a, b = cluster.node(1), cluster.node(2)
    write_file(a.path("watched"), "first")
    fd = os.open(a.path("watched"), os.O_RDONLY)
    ep = select.epoll()
    try:
        assert os.read(fd, 100) == b"first"
        ep.register(fd, select.EPOLLIN)
        # nothing new: not readable, not even after a while
        assert poll_in(fd, 0) == []
        assert poll_in(fd, 0.3) == []
        assert ep.poll(0.1) == []
        write_file(b.path("watched"), "second")       # returned: committed
        assert wait_pollin(fd) & select.POLLIN
        evs = ep.poll(20)
        assert evs and evs[0][1] & select.EPOLLIN
        # reading the new value consumes it: quiet again until the next
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"second"
        assert poll_in(fd, 0) == []
        with open(cluster.node(3).path("watched"), "a") as f:   # an append
            f.write("+")
        assert wait_pollin(fd) & select.POLLIN
        r, _, _ = select.select([fd], [], [], 20)
        assert r == [fd]
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"second+"
        assert poll_in(fd, 0) == []
        os.unlink(b.path("watched"))                  # removal wakes too
        assert wait_pollin(fd) & select.POLLIN
    finally:
        ep.close()
        os.close(fd)


def test_poll_on_a_writable_descriptor(cluster):
    a, b = cluster.node(1), cluster.node(3)
    write_file(a.path("watched-w"), "x")
    fd = os.open(a.path("watched-w"), os.O_RDWR)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLOUT)
        assert p.poll(0) == [(fd, select.POLLOUT)]
        write_file(b.path("watched-w"), "y")
        assert wait_pollin(fd) & select.POLLIN
    finally:
        os.close(fd)


# ------------------------------------------------ fsync of a directory

def test_fsync_of_a_directory_commits_the_files_created_in_it(cluster):
    a, b = cluster.node(1), cluster.node(2)
    os.mkdir(a.path("syncd"))
    # created and written, still open: only this mount knows the file
    fd = os.open(a.path("syncd/open-file"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        assert not os.path.exists(b.path("syncd/open-file"))
        dfd = os.open(a.path("syncd"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        # fsync returned: every mount sees the entry (a linearizable stat)
        assert os.path.exists(b.path("syncd/open-file"))
    finally:
        os.close(fd)
    # a creation committed at release (after close() returned): fsync of
    # the directory waits for it, in the root too
    for i in range(20):
        for d in ("syncd/", ""):
            name = "%srel%d" % (d, i)
            os.close(os.open(a.path(name), os.O_CREAT | os.O_WRONLY, 0o644))
            dfd = os.open(a.path(d or "."), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fdatasync(dfd)
            finally:
                os.close(dfd)
            assert os.path.exists(b.path(name)), name
    assert read_file(b.path("syncd/open-file")) == "data"


# ------------------------------------------------ kernel caching

CACHING = ("--entry-timeout", "60", "--attr-timeout", "60")


def test_with_kernel_caches_changes_below_the_root_are_invalidated(launched):
    """Timeouts of 60 s: every change another mount commits reaches this
    mount's kernel caches (names at any depth, directories, attributes,
    pages) when this node applies it, far sooner than the timeout."""
    c = launched(3, extra=CACHING)
    c.wait_leader()
    a, b = c.node(1), c.node(2)
    os.makedirs(b.path("d1/d2"))
    write_file(b.path("d1/d2/f"), "first")
    # a caches the names, the attributes and the pages
    for _ in range(3):
        assert read_file(a.path("d1/d2/f")) == "first"
        assert os.stat(a.path("d1/d2/f")).st_size == 5
    write_file(b.path("d1/d2/f"), "second, longer")
    # an open after the write returned reads the new value at once
    assert read_file(a.path("d1/d2/f")) == "second, longer"
    wait_for(lambda: os.stat(a.path("d1/d2/f")).st_size == 14, 20,
             "the new size on the caching mount")
    os.unlink(b.path("d1/d2/f"))
    wait_for(lambda: not os.path.exists(a.path("d1/d2/f")), 20,
             "a removed nested name to go")
    write_file(b.path("d1/d2/g"), "g")
    assert os.path.exists(a.path("d1/d2/g"))
    os.rename(b.path("d1/d2"), b.path("d1/d3"))
    wait_for(lambda: not os.path.exists(a.path("d1/d2")), 20,
             "a renamed directory's old name to go")
    assert read_file(a.path("d1/d3/g")) == "g"
    os.rename(b.path("d1"), b.path("top"))
    wait_for(lambda: not os.path.exists(a.path("d1")), 20,
             "a renamed top directory's old name to go")
    assert read_file(a.path("top/d3/g")) == "g"
    os.chmod(b.path("top/d3/g"), 0o600)
    wait_for(lambda: os.stat(a.path("top/d3/g")).st_mode & 0o777 == 0o600, 20,
             "a chmod elsewhere")


def read_rate(node, name, size, rounds):
    t0 = time.monotonic()
    for _ in range(rounds):
        with open(node.path(name), "rb") as f:
            got = 0
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        assert got == size
    dt = time.monotonic() - t0
    return size * rounds / dt / (1 << 20), rounds / dt


def test_read_throughput_with_and_without_kernel_caching(nodes, capsys):
    """Figures only (no timed assert): rereads of an unchanged 4 MiB key
    and of small keys, default mount against --attr/--entry-timeout 60."""
    figures = []
    for label, extra in (("uncached", ()), ("cached", CACHING)):
        n = nodes(node_id=1 if label == "uncached" else 2, extra_args=extra)
        n.start()
        wait_for(lambda: n.status()["role"] == "leader", 20, "the node to lead")
        big = os.urandom(4 << 20)
        write_file(n.path("big"), big, "wb")
        mb_s, _ = read_rate(n, "big", len(big), 40)
        write_file(n.path("small"), "x" * 100)
        _, opens_s = read_rate(n, "small", 100, 400)
        t0 = time.monotonic()
        for _ in range(2000):
            os.stat(n.path("small"))
        stats_s = 2000 / (time.monotonic() - t0)
        figures.append("%-8s 4 MiB key reread: %7.1f MiB/s; 100-byte key "
                       "open+read+close: %6.0f/s; stat: %7.0f/s"
                       % (label, mb_s, opens_s, stats_s))
        # and the cached mount still reads a change at once
        write_file(n.path("big"), b"changed", "wb")
        assert read_file(n.path("big"), "rb") == b"changed"
        n.stop()
    with capsys.disabled():
        print("\n" + "\n".join(figures))


# ------------------------------------------------ tailing the chain

def parse_blocks(text):
    """Complete blocks of a stream: [(index, text)]; each ends with an
    empty line."""
    out = []
    for chunk in text.split("\n\n"):
        if chunk.startswith("index: "):
            out.append((int(chunk.split("\n", 1)[0][7:]), chunk + "\n"))
    if not text.endswith("\n\n") and out:
        out.pop()                                # the last one is partial
    return out


def read_available(fd):
    """Everything a stream has now, without waiting for more."""
    data = b""
    while poll_in(fd, 0):
        chunk = os.read(fd, 1 << 16)
        assert chunk, "a stream never ends"
        data += chunk
    return data.decode()


def test_chain_stream_follows_every_commit_in_order(cluster):
    a, b = cluster.node(1), cluster.node(3)
    out = os.path.join(os.path.dirname(a.path("")), "..", "stream-out")
    with open(out, "wb") as sink:
        cat = subprocess.Popen(["cat", a.path(".chain/stream")], stdout=sink)
    try:
        # the stream starts after the head it opened at: a block that
        # commits from now on shows up
        def opened():
            fds = "/proc/%d/fd" % cat.pid
            return any(os.readlink(os.path.join(fds, x)).endswith(".chain/stream")
                       for x in os.listdir(fds))
        wait_for(opened, 10, "cat to open the stream")
        names = ["streamed%d" % i for i in range(30)]
        for i, name in enumerate(names):
            write_file((a if i % 2 else b).path(name), "v%d" % i)
        def has_all():
            with open(out) as f:
                text = f.read()
            return all(('key="%s"' % n) in text for n in names)
        wait_for(has_all, 20, "every write in the stream")
        assert cat.poll() is None                # it waits for more
    finally:
        cat.kill()                               # a signal ends the wait
        cat.wait(timeout=20)
    with open(out) as f:
        blocks = parse_blocks(f.read())
    indexes = [i for i, _ in blocks]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    for index, text in blocks:                   # each as .chain/<n> has it
        assert read_file(a.path(".chain/%010d" % index)) == text


def test_chain_since_resumes_from_an_index(cluster):
    a = cluster.node(2)
    write_file(a.path("since-key"), "x")
    head = a.status()["chain_head"]["index"]
    fd = os.open(a.path(".chain/since/1"), os.O_RDONLY)
    try:
        blocks = parse_blocks(read_available(fd))
        assert [i for i, _ in blocks][:head] == list(range(1, head + 1))
        # caught up: a read would wait; poll says so, until a commit
        assert poll_in(fd, 0) == []
        write_file(cluster.node(1).path("since-key"), "y")
        wait_pollin(fd)
        more = parse_blocks(read_available(fd))
        assert more and more[0][0] == blocks[-1][0] + 1
        assert any('key="since-key"' in t for _, t in more)
    finally:
        os.close(fd)
    # resuming from the middle gives the same blocks
    fd = os.open(a.path(".chain/since/%d" % (head - 1)), os.O_RDONLY)
    try:
        again = parse_blocks(read_available(fd))
        assert again[0] == blocks[head - 2]
    finally:
        os.close(fd)
    # read-only, and nothing else is there
    for path, flags, code in ((".chain/stream", os.O_WRONLY, errno.EACCES),
                              (".chain/since/5", os.O_RDWR, errno.EACCES),
                              (".chain/since/x", os.O_RDONLY, errno.ENOENT),
                              (".chain/since", os.O_WRONLY, errno.EISDIR)):
        with pytest.raises(OSError) as e:
            os.open(a.path(path), flags)
        assert e.value.errno == code, path
    assert os.listdir(a.path(".chain/since")) == []
    assert os.getxattr(a.path(".chain"), "user.paxos.oldest") == b"1"


def test_chain_since_a_compacted_index_is_erange_with_the_oldest(nodes):
    n = nodes(extra_args=("--snapshot-entries", "40",
                          "--chain-segment-bytes", "16384"))
    n.start()
    wait_for(lambda: n.status()["role"] == "leader", 20, "the node to lead")
    # a reader that falls more than a snapshot behind
    slow = os.open(n.path(".chain/since/0"), os.O_RDONLY)   # the oldest
    try:
        first = os.read(slow, 64).decode()
        assert first.startswith("index: 1\n")
        for i in range(600):
            write_file(n.path("c%d" % (i % 20)), "x" * 200)
        wait_for(lambda: n.status()["snapshot"]["chain_base"] > 1, 30,
                 "compaction")
        with pytest.raises(OSError) as e:
            while True:
                os.read(slow, 1 << 16)
        assert e.value.errno == errno.ERANGE
    finally:
        os.close(slow)
    oldest = int(os.getxattr(n.path(".chain/since"), "user.paxos.oldest"))
    assert oldest == n.status()["snapshot"]["chain_base"] + 1
    assert int(os.getxattr(n.path(".chain/stream"), "user.paxos.oldest")) == oldest
    with pytest.raises(OSError) as e:
        os.open(n.path(".chain/since/%d" % (oldest - 1)), os.O_RDONLY)
    assert e.value.errno == errno.ERANGE
    fd = os.open(n.path(".chain/since/%d" % oldest), os.O_RDONLY)
    try:
        assert os.read(fd, 64).decode().startswith("index: %d\n" % oldest)
    finally:
        os.close(fd)


def test_directory_moved_elsewhere_is_renamed_again_here(cluster):
    """A directory moved by another mount, whose old name this kernel
    still holds (a dentry, revalidated on use): renaming it again across
    directories here must work, not fail with ESTALE (a directory inode
    has one dentry, and the lookup inside rename(2) cannot move it)."""
    a, b = cluster.node(1), cluster.node(2)
    os.mkdir(a.path("mvroot"))
    for r in range(20):
        os.mkdir(a.path("mvroot/src%d" % r))
        write_file(a.path("mvroot/src%d/f" % r), "v%d" % r)
        os.mkdir(a.path("mvroot/dst%d" % r))
        assert os.path.isdir(b.path("mvroot/src%d" % r))   # b's dentry
        os.rename(a.path("mvroot/src%d" % r), a.path("mvroot/dst%d/moved" % r))
        os.rename(b.path("mvroot/dst%d/moved" % r), b.path("mvroot/again%d" % r))
        assert read_file(a.path("mvroot/again%d/f" % r)) == "v%d" % r

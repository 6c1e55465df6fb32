"""A paxosfs file behaves as one file, and every read is linearizable.

Across mounts (a 3-node cluster shared by the tests of this module): a
stat, lookup or listing that starts after a write returned on another
mount reflects it, every time.  On one mount: descriptors of one file see
one content (size, seek, read), a file removed or renamed over while open
stays removed, a child that inherits a descriptor does not commit its
parent's half-written file, and explicit errors where a key cannot do what
was asked.  With --allow-other the kernel checks each key's owner and mode.
"""
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import (CommandRunner, LaunchedCluster, Node, chain_head, read_file, wait_for,
                      write_file)

ROUNDS = 25


def expect_errno(code, fn, *args):
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, "expected %s, got %s" % (
        errno.errorcode[code], errno.errorcode.get(info.value.errno))


def sh(script, **kw):
    return subprocess.run(["sh", "-c", script], check=True, capture_output=True, **kw)


# --------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 3-node cluster for the cross-mount tests of this module (each
    test uses keys of its own), brought down at the end, also on failure."""
    runner = CommandRunner()
    c = LaunchedCluster(tmp_path_factory.mktemp("semantics") / "cluster", runner)
    try:
        c.up(3)
        c.wait_leader()
        yield c
    finally:
        try:
            c.bring_down()
        finally:
            runner.close()


def followers(c):
    leader = c.wait_leader()
    return [c.node(k) for k in (1, 2, 3) if k != leader]


def leader_node(c):
    return c.node(c.wait_leader())


# ------------------------------------------------ A. linearizable reads

def test_new_key_is_listed_at_once_on_another_follower(cluster):
    a, b = followers(cluster)
    os.listdir(b.mnt)
    for i in range(ROUNDS):
        write_file(a.path("listed%d" % i), "v")
        assert "listed%d" % i in os.listdir(b.mnt), "round %d" % i


def test_rename_is_listed_at_once_on_another_mount(cluster):
    a, b = followers(cluster)
    write_file(a.path("mv0"), "x")
    for i in range(ROUNDS):
        os.stat(b.path("mv%d" % i))          # B knows the old name
        os.rename(a.path("mv%d" % i), a.path("mv%d" % (i + 1)))
        names = os.listdir(b.mnt)
        assert "mv%d" % (i + 1) in names and "mv%d" % i not in names, "round %d" % i
        expect_errno(errno.ENOENT, os.stat, b.path("mv%d" % i))
        assert os.stat(b.path("mv%d" % (i + 1))).st_size == 1


def test_removal_is_seen_by_stat_at_once_on_another_mount(cluster):
    a, b = followers(cluster)
    for i in range(ROUNDS):
        write_file(a.path("gone"), "v%d" % i)
        assert os.stat(b.path("gone")).st_size == len("v%d" % i)   # cached on B
        os.unlink(a.path("gone"))
        expect_errno(errno.ENOENT, os.stat, b.path("gone"))
        assert "gone" not in os.listdir(b.mnt)


def test_stat_shows_another_mounts_write_at_once(cluster):
    a, b = followers(cluster)
    write_file(a.path("sized"), "x")
    for i in range(2, ROUNDS):
        assert os.stat(b.path("sized")).st_size == i - 1
        write_file(a.path("sized"), "x" * i)
        assert os.stat(b.path("sized")).st_size == i, "round %d" % i
    # a descriptor opened before the write sees it in fstat and pread too
    fd = os.open(b.path("sized"), os.O_RDONLY)
    try:
        write_file(a.path("sized"), "y" * 100)
        assert os.fstat(fd).st_size == 100
        assert os.pread(fd, 200, 0) == b"y" * 100
    finally:
        os.close(fd)


def test_reread_of_an_open_file_sees_another_mounts_write(cluster):
    a, b = followers(cluster)
    write_file(a.path("reread"), "first")
    fd = os.open(b.path("reread"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"first"
        write_file(a.path("reread"), "second")
        # at the end: a new read point; the file was replaced, so this
        # front-to-back pass ends with the value it read, never a mix
        assert os.read(fd, 100) == b""
        assert os.read(fd, 100) == b"d"          # a new read: the new value
        assert os.pread(fd, 100, 0) == b"second"
        write_file(a.path("reread"), "second and more")
        assert os.read(fd, 100) == b" and more"  # tail -f
    finally:
        os.close(fd)


def test_every_read_path_sees_another_mounts_change_at_once(cluster):
    """Whatever a mount does first after another mount's write returned,
    it sees that write: a stat (lookup, getattr), an open and read, a
    listing, an open that loads the value for writing (O_RDWR, O_APPEND),
    a truncate(path); after another mount's unlink, a stat, an open and a
    listing miss the name at once, and a descriptor opened before reads
    the value it opened."""
    a, b = followers(cluster)

    def first_read(kind, name, want):
        p = b.path(name)
        if kind == "stat":
            assert os.stat(p).st_size == len(want)
        elif kind == "read":
            assert read_file(p) == want
        elif kind == "listdir":
            assert name in os.listdir(b.mnt)
        elif kind == "rdwr":
            fd = os.open(p, os.O_RDWR)
            try:
                assert os.read(fd, 100) == want.encode()
            finally:
                os.close(fd)
        elif kind == "append":
            write_file(p, "+", "a")
            want += "+"
        elif kind == "truncate":
            os.truncate(p, 1)
            want = want[:1]
        return want

    kinds = ("stat", "read", "listdir", "rdwr", "append", "truncate")
    for i in range(10):
        for kind in kinds:
            name = "path-%s-%d" % (kind, i)
            value = "v%d-%s" % (i, kind)
            write_file(a.path(name), value)                 # created on A
            value = first_read(kind, name, value)           # at once on B
            assert read_file(a.path(name)) == value, (kind, i)
            write_file(a.path(name), value + "!")           # replaced on A
            value = first_read(kind, name, value + "!")
            assert read_file(a.path(name)) == value, (kind, i)
        for kind in ("stat", "open", "listdir", "descriptor"):
            name = "gone-%s-%d" % (kind, i)
            write_file(a.path(name), "x%d" % i)
            if kind == "descriptor":
                fd = os.open(b.path(name), os.O_RDONLY)
            os.unlink(a.path(name))                         # removed on A
            if kind == "stat":
                expect_errno(errno.ENOENT, os.stat, b.path(name))
            elif kind == "open":
                expect_errno(errno.ENOENT, os.open, b.path(name), os.O_RDONLY)
            elif kind == "listdir":
                assert name not in os.listdir(b.mnt), i
            else:
                try:
                    assert os.pread(fd, 100, 0) == b"x%d" % i, i
                finally:
                    os.close(fd)
                expect_errno(errno.ENOENT, os.stat, b.path(name))


def test_with_kernel_caches_a_removal_elsewhere_is_seen_by_open(launched):
    """--entry-timeout/--attr-timeout above 0 let the kernel keep names:
    an open through a cached name still finds a file removed elsewhere
    gone, and a new file of that name is a new file."""
    c = launched(3, extra=("--entry-timeout", "10", "--attr-timeout", "1"))
    c.wait_leader()
    for r in range(6):
        write_file(c.node(1).path("cached"), "v%d\n" % r)
        for k in (1, 2, 3):
            assert read_file(c.node(k).path("cached")) == "v%d\n" % r
        os.unlink(c.node(1 + r % 3).path("cached"))
        for k in (1, 2, 3):
            with pytest.raises(FileNotFoundError):
                read_file(c.node(k).path("cached"))
    write_file(c.node(2).path("cached"), "again\n")
    assert read_file(c.node(3).path("cached")) == "again\n"


def test_with_kernel_caches_a_name_removed_elsewhere_is_created_again(launched):
    """The kernel may still hold a name another mount removed (the
    invalidation is on its way): a reader through it finds nothing, and
    open(O_CREAT) through it creates the file (the mount answers ESTALE,
    the kernel looks the name up again), never ENOENT.  Each round races
    the invalidation, so many rounds."""
    c = launched(3, extra=("--entry-timeout", "10", "--attr-timeout", "1"))
    c.wait_leader()
    m1, m2 = c.node(1), c.node(2)
    failed = []
    for r in range(300):
        write_file(m1.path("k"), "v%d\n" % r)
        assert read_file(m2.path("k")) == "v%d\n" % r
        os.unlink(m2.path("k"))
        with pytest.raises(FileNotFoundError):
            read_file(m1.path("k"))
        try:
            write_file(m1.path("k"), "w%d\n" % r)
        except OSError as e:
            failed.append((r, e.errno))
            break
        assert read_file(m2.path("k")) == "w%d\n" % r
        os.unlink(m1.path("k"))
    assert not failed, "a create through a stale name failed: %s" % failed


def test_concurrent_writers_across_mounts(cluster):
    """Each mount has its own working copy: whole-value commits, the last
    one wins; O_APPEND writers each add their bytes."""
    a, b = followers(cluster)
    write_file(a.path("both"), "0123456789")
    fa = os.open(a.path("both"), os.O_RDWR)
    fb = os.open(b.path("both"), os.O_RDWR)
    os.pwrite(fa, b"AA", 0)
    os.pwrite(fb, b"BB", 8)
    os.close(fa)
    assert read_file(b.path("both")) == "AA23456789"
    os.close(fb)
    for n in (a, b):
        assert read_file(n.path("both")) == "01234567BB"
    fa = os.open(a.path("both"), os.O_WRONLY | os.O_APPEND)
    fb = os.open(b.path("both"), os.O_WRONLY | os.O_APPEND)
    os.write(fa, b"-a")
    os.write(fb, b"-b")
    os.close(fb)
    os.close(fa)
    for n in (a, b):
        assert read_file(n.path("both")) == "01234567BB-b-a"


# ------------------------------------------------ B. one file, one content

def check_own_writes(p):
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"A" * 100)
        assert os.lseek(fd, 0, os.SEEK_END) == 100
        assert os.fstat(fd).st_size == 100
        assert os.stat(p).st_size == 100
        os.write(fd, b"B")
        assert os.fstat(fd).st_size == 101
        assert os.pread(fd, 200, 0) == b"A" * 100 + b"B"
    finally:
        os.close(fd)
    assert read_file(p, "rb") == b"A" * 100 + b"B"
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 10)
        assert os.fstat(fd).st_size == 10
        assert os.lseek(fd, 0, os.SEEK_END) == 10
        os.write(fd, b"C")
        assert os.stat(p).st_size == 11
        assert os.pread(fd, 200, 0) == b"A" * 10 + b"C"
    finally:
        os.close(fd)
    assert read_file(p, "rb") == b"A" * 10 + b"C"


def test_descriptor_sees_its_own_writes_in_size_and_seek(node, cluster):
    check_own_writes(node.path("own"))
    for n in followers(cluster) + [leader_node(cluster)]:
        check_own_writes(n.path("own%d" % n.id))


def test_pread_through_an_append_descriptor_reads_the_file(node):
    p = node.path("appended")
    write_file(p, "hello")
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    try:
        os.write(fd, b"XY")
        assert os.pread(fd, 100, 0) == b"helloXY"
        os.pwrite(fd, b"Z", 0)          # O_APPEND: pwrite appends too
        assert os.pread(fd, 100, 0) == b"helloXYZ"
        assert os.fstat(fd).st_size == 8
    finally:
        os.close(fd)
    assert read_file(p) == "helloXYZ"


def test_two_descriptors_of_one_file_write_one_content(node):
    p = node.path("shared")
    write_file(p, "")
    fd1 = os.open(p, os.O_RDWR)
    fd2 = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd1, b"AAAA", 0)
        os.pwrite(fd2, b"BB", 10)
        assert os.pread(fd1, 100, 0) == b"AAAA" + b"\0" * 6 + b"BB"
    finally:
        os.close(fd1)
        os.close(fd2)
    assert read_file(p, "rb") == b"AAAA" + b"\0" * 6 + b"BB"


def test_concurrent_replacers_on_one_mount_each_commit_a_whole_value(node):
    """O_TRUNC starts a new version: two `> key` writers on one mount never
    mix their bytes, the last close wins, readers see whole values."""
    p = node.path("replaced")
    write_file(p, "old")
    fd1 = os.open(p, os.O_WRONLY | os.O_TRUNC)
    fd2 = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.write(fd2, b"c3-1028")
    os.write(fd1, b"c0-987")
    assert read_file(p) == "old"
    os.close(fd2)
    assert read_file(p) == "c3-1028"
    os.close(fd1)
    assert read_file(p) == "c0-987"
    # a descriptor opened later without O_TRUNC joins the newest version
    fd1 = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.write(fd1, b"new")
    fd2 = os.open(p, os.O_RDWR)
    assert os.pread(fd2, 10, 0) == b"new"
    os.close(fd2)
    os.close(fd1)
    assert read_file(p) == "new"


def test_file_unlinked_while_open_stays_removed(node):
    d = node.mnt
    sh("cd '%s' && echo old > r1 && exec 3<>r1 && rm r1 && echo new >&3 && exec 3>&-" % d)
    assert not os.path.exists(node.path("r1"))
    # also with a truncating descriptor, and with several writes and closes
    sh("cd '%s' && echo old > r2 && exec 3>r2 && echo a >&3 && rm r2 && echo b >&3 && "
       "exec 3>&-" % d)
    assert not os.path.exists(node.path("r2"))
    assert "r1" not in os.listdir(d) and "r2" not in os.listdir(d)


def test_unlinked_open_file_has_no_links(node):
    p = node.path("nlink")
    write_file(p, "x")
    fd = os.open(p, os.O_RDWR)
    try:
        assert os.fstat(fd).st_nlink == 1
        os.unlink(p)
        st = os.fstat(fd)
        assert st.st_nlink == 0 and st.st_size == 1
        os.write(fd, b"more")
        assert os.pread(fd, 10, 0) == b"more"
    finally:
        os.close(fd)
    assert not os.path.exists(p)


def test_file_renamed_over_while_open_is_overwritten(node):
    d = node.mnt
    sh("cd '%s' && echo old > a && echo ccc > c && exec 3<>a && mv c a && echo NEW >&3 && "
       "exec 3>&-" % d)
    assert read_file(node.path("a")) == "ccc\n"
    assert not os.path.exists(node.path("c"))
    # writes follow the file they opened to its new name
    sh("cd '%s' && echo old > f1 && exec 3<>f1 && mv f1 f2 && echo NEW >&3 && exec 3>&-" % d)
    assert read_file(node.path("f2")) == "NEW\n"
    assert not os.path.exists(node.path("f1"))


def test_removed_or_replaced_elsewhere_while_open(cluster):
    a, b = followers(cluster)
    # unlinked on another mount: writes through the descriptor vanish
    write_file(a.path("x1"), "old\n")
    fd = os.open(a.path("x1"), os.O_RDWR)
    os.unlink(b.path("x1"))
    os.write(fd, b"new\n")
    os.close(fd)
    for n in (a, b, leader_node(cluster)):
        assert not os.path.exists(n.path("x1"))
    # renamed over on another mount: the old file is gone with its writes
    write_file(a.path("x2"), "old\n")
    write_file(a.path("x3"), "ccc\n")
    fd = os.open(a.path("x2"), os.O_RDWR)
    os.rename(b.path("x3"), b.path("x2"))
    os.write(fd, b"NEW\n")
    os.close(fd)
    for n in (a, b):
        assert read_file(n.path("x2")) == "ccc\n"
    # renamed on another mount: the writes follow the file
    write_file(a.path("x4"), "old\n")
    fd = os.open(a.path("x4"), os.O_RDWR)
    os.rename(b.path("x4"), b.path("x5"))
    os.write(fd, b"NEW\n")
    os.close(fd)
    for n in (a, b):
        assert read_file(n.path("x5")) == "NEW\n"
        assert not os.path.exists(n.path("x4"))


def test_created_file_exists_on_its_mount_until_committed(node):
    for i in range(100):
        p = node.path("c%d" % i)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT)
        assert "c%d" % i in os.listdir(node.mnt)
        os.close(fd)
        # the creation commits when the file is released, after close():
        # on this mount it exists all along
        assert "c%d" % i in os.listdir(node.mnt), "round %d" % i
        if i % 2:
            os.truncate(p, 3)
            assert read_file(p, "rb") == b"\0\0\0"
        os.unlink(p)
        assert not os.path.exists(p)
    wait_for(lambda: not [n for n in os.listdir(node.mnt) if n.startswith("c")], 10,
             "no creation committed after its unlink")
    assert not [n for n in os.listdir(node.mnt) if n.startswith("c")]


def test_stat_after_a_commit_on_the_same_mount(node):
    p = node.path("fresh")
    write_file(p, "x")
    for i in range(2, 12):
        m1 = os.stat(p).st_mtime_ns
        wait_for(lambda: time.time_ns() > m1 + 2_000_000, 5, "the clock to move")
        write_file(p, "x" * i)
        st = os.stat(p)
        assert st.st_size == i
        assert st.st_mtime_ns > m1 and st.st_ctime_ns == st.st_mtime_ns
        block = read_file(node.path(".chain/%010d" % chain_head(node)))
        ms = int(block.split("time: ")[1].split("(")[1].split(")")[0])
        assert st.st_mtime_ns == ms * 1_000_000


def test_child_that_inherits_a_descriptor_does_not_commit(cluster):
    a, b = followers(cluster)
    write_file(a.path("forked"), "old value\n")
    fd = os.open(a.path("forked"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"new ")
        pid = os.fork()
        if pid == 0:
            os._exit(0)         # closes its copy of fd: a FLUSH from its files
        os.waitpid(pid, 0)
        assert read_file(b.path("forked")) == "old value\n"
        assert read_file(a.path("forked")) == "old value\n"
        os.write(fd, b"value\n")
    finally:
        os.close(fd)
    assert read_file(b.path("forked")) == "new value\n"
    # a child that writes is a writer too: its close commits
    fd = os.open(a.path("forked"), os.O_WRONLY | os.O_TRUNC)
    pid = os.fork()
    if pid == 0:
        os.write(fd, b"child\n")
        os._exit(0)
    os.waitpid(pid, 0)
    assert read_file(b.path("forked")) == "child\n"
    os.close(fd)


def test_append_past_the_limit_fails_at_write_and_commits_nothing(node):
    p = node.path("full")
    limit = 4 << 20
    with open(p, "wb") as f:
        f.write(b"z" * (limit - 10))
    head = chain_head(node)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"0123456789")               # exactly the limit
    with pytest.raises(OSError) as info:
        os.write(fd, b"!")
    assert info.value.errno == errno.EFBIG
    expect_errno(errno.EFBIG, os.close, fd)
    assert chain_head(node) == head            # no refused APPEND block
    assert os.stat(p).st_size == limit - 10
    with open(p, "ab") as f:                   # the limit itself is fine
        f.write(b"0123456789")
    assert os.stat(p).st_size == limit


def test_times_and_modes_are_stored(node):
    """Explicit times, chmod and chown are one committed entry each and
    stat shows them; "now" re-commits the file (a new commit time)."""
    p = node.path("times")
    write_file(p, "t")
    mtime = os.stat(p).st_mtime_ns
    os.utime(p, (1, 1))
    assert os.stat(p).st_mtime_ns == 1_000_000_000
    os.utime(p, ns=(mtime, 1_500_000_000_123_456_789))   # milliseconds kept
    assert os.stat(p).st_mtime_ns == 1_500_000_000_123_000_000
    os.utime(p)                                 # now: a new commit
    assert os.stat(p).st_mtime_ns >= mtime
    os.chmod(p, 0o600)
    assert os.stat(p).st_mode & 0o7777 == 0o600
    os.chown(p, os.getuid(), 4242)
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (os.getuid(), 4242)
    assert read_file(p) == "t"


# ------------------------------------------------ C. permissions

@pytest.fixture
def shared_node():
    """A single node with --allow-other under a directory every user may
    enter (pytest's own temporary directories are private to root)."""
    base = tempfile.mkdtemp(prefix="paxosfs-perm-", dir="/tmp")
    os.chmod(base, 0o755)
    n = Node(base, 1, ["--allow-other"])
    try:
        os.chmod(os.path.dirname(n.mnt), 0o755)
        n.start()
        wait_for(lambda: n.status()["role"] == "leader" and n.status()["commit_index"] >= 1,
                 20, "the node to lead")
        yield n
    finally:
        n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(fn):
    """fn() in a forked child running as user nobody: its result or errno."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                out = {"ok": fn()}
            except OSError as e:
                out = {"errno": e.errno}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_other_users_get_the_keys_owner_and_mode(shared_node):
    n = shared_node
    p = n.path("owned")
    write_file(p, "root's\n")
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert os.stat(n.mnt).st_mode & 0o7777 == 0o755
    assert as_nobody(lambda: read_file(p)) == {"ok": "root's\n"}
    assert as_nobody(lambda: os.stat(p).st_uid) == {"ok": 0}
    assert as_nobody(lambda: write_file(p, "mine")) == {"errno": errno.EACCES}
    assert as_nobody(lambda: write_file(p, "more", "a")) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.truncate(p, 0)) == {"errno": errno.EACCES}
    assert as_nobody(lambda: write_file(n.path("new"), "x")) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.rename(p, n.path("stolen"))) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.unlink(p)) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.chmod(p, 0o666)) == {"errno": errno.EPERM}
    assert as_nobody(lambda: sorted(os.listdir(n.mnt))) == {
        "ok": [".chain", ".cluster", ".status", "owned"]}
    assert read_file(p) == "root's\n"
    assert not os.path.exists(n.path("new")) and not os.path.exists(n.path("stolen"))

"""The namespace of a paxosfs mount: directories, files at any depth, rename
of files and whole trees as one committed entry, and the errors of
rename(2), rmdir(2) and friends, on real mounts.

Most single-mount cases are rows of a table (CASES): a setup of paths, one
call, the errno it must give (0: success) and, where given, the tree after
it.  Then the tools people use on trees (mkdir -p, ls -R, find, du, cp -r,
tar x, rm -r), and, on a 3-node cluster, a tree renamed on one mount seen
all-or-nothing by a reader on another.
"""
import ctypes
import errno
import os
import subprocess
import tarfile
import threading

import pytest

from conftest import CommandRunner, LaunchedCluster, read_file, wait_for, write_file

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(src, dst, flags):
    AT_FDCWD = -100
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst),
                         ctypes.c_uint(flags))
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def tree(root):
    """Every path below root: directories end in '/', files show content."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel + "/"
        for d in dirnames:
            out.append(rel + d + "/")
        for f in filenames:
            if not rel and f in (".status",):
                continue
            out.append(rel + f + "=" + read_file(os.path.join(dirpath, f)))
        for own in (".chain", ".cluster"):   # the mount's own directories
            if not rel and own in dirnames:
                dirnames.remove(own)
                out.remove(own + "/")
    return sorted(out)


def build(root, spec):
    """Make the paths of spec: 'a/' a directory, 'a/f=x' a file holding x."""
    for item in spec.split():
        if item.endswith("/"):
            os.mkdir(os.path.join(root, item))
        else:
            path, _, data = item.partition("=")
            write_file(os.path.join(root, path), data)


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


# (name, setup, call(root), errno, tree after or None)
def P(root, p):
    return os.path.join(root, p)


CASES = [
    ("mkdir", "", lambda r: os.mkdir(P(r, "a")), 0, ["a/"]),
    ("mkdir-exists", "a/", lambda r: os.mkdir(P(r, "a")), errno.EEXIST, None),
    ("mkdir-over-file", "a=1", lambda r: os.mkdir(P(r, "a")), errno.EEXIST, None),
    ("mkdir-no-parent", "", lambda r: os.mkdir(P(r, "a/b")), errno.ENOENT, []),
    ("mkdir-under-file", "f=1", lambda r: os.mkdir(P(r, "f/b")), errno.ENOTDIR, None),
    ("file-deep", "a/ a/b/ a/b/c/", lambda r: write_file(P(r, "a/b/c/f"), "x"), 0,
     ["a/", "a/b/", "a/b/c/", "a/b/c/f=x"]),
    ("file-no-dir", "", lambda r: write_file(P(r, "nope/f"), "x"), errno.ENOENT, []),
    ("open-dir-write", "a/", lambda r: open(P(r, "a"), "w"), errno.EISDIR, None),
    ("unlink-dir", "a/", lambda r: os.unlink(P(r, "a")), errno.EISDIR, ["a/"]),
    ("rmdir-empty", "a/ a/b/", lambda r: os.rmdir(P(r, "a/b")), 0, ["a/"]),
    ("rmdir-notempty", "a/ a/f=1", lambda r: os.rmdir(P(r, "a")), errno.ENOTEMPTY,
     ["a/", "a/f=1"]),
    ("rmdir-file", "f=1", lambda r: os.rmdir(P(r, "f")), errno.ENOTDIR, None),
    ("rmdir-missing", "", lambda r: os.rmdir(P(r, "a")), errno.ENOENT, None),
    ("stat-through-file", "f=1", lambda r: os.stat(P(r, "f/x")), errno.ENOTDIR, None),
    ("name-max", "", lambda r: write_file(P(r, "n" * 255), "x"), 0, ["n" * 255 + "=x"]),
    ("name-too-long", "", lambda r: os.mkdir(P(r, "n" * 256)), errno.ENAMETOOLONG, []),
    ("mv-file-into-dir", "f=1 d/", lambda r: os.rename(P(r, "f"), P(r, "d/g")), 0,
     ["d/", "d/g=1"]),
    ("mv-file-replaces", "f=1 d/ d/g=2", lambda r: os.rename(P(r, "f"), P(r, "d/g")), 0,
     ["d/", "d/g=1"]),
    ("mv-tree", "a/ a/b/ a/b/f=1 a/g=2", lambda r: os.rename(P(r, "a"), P(r, "z")), 0,
     ["z/", "z/b/", "z/b/f=1", "z/g=2"]),
    ("mv-tree-deeper", "a/ a/f=1 d/", lambda r: os.rename(P(r, "a"), P(r, "d/a")), 0,
     ["d/", "d/a/", "d/a/f=1"]),
    ("mv-dir-over-empty-dir", "a/ a/f=1 e/", lambda r: os.rename(P(r, "a"), P(r, "e")), 0,
     ["e/", "e/f=1"]),
    ("mv-dir-over-full-dir", "a/ e/ e/f=1", lambda r: os.rename(P(r, "a"), P(r, "e")),
     errno.ENOTEMPTY, ["a/", "e/", "e/f=1"]),
    ("mv-file-over-dir", "f=1 e/", lambda r: os.rename(P(r, "f"), P(r, "e")), errno.EISDIR,
     None),
    ("mv-dir-over-file", "a/ f=1", lambda r: os.rename(P(r, "a"), P(r, "f")), errno.ENOTDIR,
     None),
    ("mv-dir-into-itself", "a/ a/b/", lambda r: os.rename(P(r, "a"), P(r, "a/b/c")),
     errno.EINVAL, ["a/", "a/b/"]),
    ("mv-missing", "", lambda r: os.rename(P(r, "x"), P(r, "y")), errno.ENOENT, None),
    ("noreplace", "f=1 g=2", lambda r: renameat2(P(r, "f"), P(r, "g"), RENAME_NOREPLACE),
     errno.EEXIST, ["f=1", "g=2"]),
    ("noreplace-dir", "f=1 d/", lambda r: renameat2(P(r, "f"), P(r, "d"), RENAME_NOREPLACE),
     errno.EEXIST, None),
    ("exchange-files", "f=1 g=2", lambda r: renameat2(P(r, "f"), P(r, "g"), RENAME_EXCHANGE),
     0, ["f=2", "g=1"]),
    ("exchange-file-dir", "f=1 d/ d/x=2",
     lambda r: renameat2(P(r, "f"), P(r, "d"), RENAME_EXCHANGE), 0,
     ["d=1", "f/", "f/x=2"]),
    ("exchange-missing", "f=1", lambda r: renameat2(P(r, "f"), P(r, "g"), RENAME_EXCHANGE),
     errno.ENOENT, ["f=1"]),
    ("link", "f=1", lambda r: os.link(P(r, "f"), P(r, "h")), errno.EPERM, None),
    ("symlink", "", lambda r: os.symlink("x", P(r, "l")), errno.EPERM, []),
    ("mkfifo", "d/", lambda r: os.mkfifo(P(r, "d/p")), errno.EPERM, ["d/"]),
    ("reserved-below-root", "d/", lambda r: write_file(P(r, "d/.status"), "x"), 0,
     ["d/", "d/.status=x"]),
]


@pytest.mark.parametrize("name,setup,call,code,after", CASES, ids=[c[0] for c in CASES])
def test_namespace_table(node, name, setup, call, code, after):
    root = node.mnt
    build(root, setup)
    got = errno_of(lambda: call(root))
    assert got == code, "%s: %s, want %s" % (name, errno.errorcode.get(got, got),
                                             errno.errorcode.get(code, code))
    if after is not None:
        assert tree(root) == sorted(after)


def test_stat_and_listing_of_directories(node):
    root = node.mnt
    build(root, "a/ a/b/ a/f=xy")
    st = os.stat(P(root, "a"))
    assert st.st_mode & 0o170000 == 0o040000
    assert sorted(os.listdir(P(root, "a"))) == ["b", "f"]
    assert os.listdir(P(root, "a/b")) == []
    with os.scandir(P(root, "a")) as it:
        kinds = {e.name: e.is_dir() for e in it}
    assert kinds == {"b": True, "f": False}
    assert sorted(os.listdir(root)) == [".chain", ".cluster", ".status", "a"]
    assert os.stat(P(root, "a/f")).st_size == 2


def test_path_max(node):
    """A path of up to 4095 bytes (PATH_MAX less its NUL) below the mount,
    each name up to 255 bytes; one more byte is ENAMETOOLONG."""
    root = node.mnt
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        path = ""
        for i in range(20):                   # 20 names of 200 bytes
            name = ("%02d" % i) + "d" * 198
            path = path + "/" + name if path else name
            os.mkdir(path, dir_fd=fd)
        last = "f" * (4095 - len(path) - 1)   # 75 bytes
        full = path + "/" + last
        assert len(full) == 4095
        with open(os.open(full, os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as f:
            f.write("deep")
        with open(os.open(full, os.O_RDONLY, dir_fd=fd)) as f:
            assert f.read() == "deep"
        fd2 = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        try:
            expect = errno_of(lambda: os.open(last + "x", os.O_WRONLY | os.O_CREAT,
                                              dir_fd=fd2))
            assert expect == errno.ENAMETOOLONG
        finally:
            os.close(fd2)
    finally:
        os.close(fd)


def sh(cmd, cwd=None):
    return subprocess.run(["sh", "-c", cmd], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=120).stdout


def test_tree_tools(node, tmp_path):
    """mkdir -p, files at depth, ls -R, find, du, cp -r, tar x, rm -r."""
    root = node.mnt
    sh("mkdir -p a/b/c && echo one > a/b/c/f && echo two > a/g", cwd=root)
    assert tree(root) == ["a/", "a/b/", "a/b/c/", "a/b/c/f=one\n", "a/g=two\n"]
    out = sh("ls -R a", cwd=root)
    assert "a/b/c:\nf" in out and "a:\nb\ng" in out
    assert sorted(sh("find a", cwd=root).split()) == [
        "a", "a/b", "a/b/c", "a/b/c/f", "a/g"]
    assert sh("find a -type d", cwd=root).split() == ["a", "a/b", "a/b/c"] or \
        sorted(sh("find a -type d", cwd=root).split()) == ["a", "a/b", "a/b/c"]
    assert sh("du -s a", cwd=root).split()[1] == "a"
    # cp -r in, and back out
    src = tmp_path / "src"
    (src / "x" / "y").mkdir(parents=True)
    (src / "x" / "y" / "z").write_text("zz")
    (src / "top").write_text("t")
    sh("cp -r %s %s/copy" % (src, root))
    assert sorted(p for p in tree(root) if p.startswith("copy")) == [
        "copy/", "copy/top=t", "copy/x/", "copy/x/y/", "copy/x/y/z=zz"]
    sh("cp -r %s/copy %s/back" % (root, tmp_path))
    assert (tmp_path / "back" / "x" / "y" / "z").read_text() == "zz"
    # tar x: times and modes are not stored yet (README), so -m and
    # --no-same-permissions
    tarpath = tmp_path / "t.tar"
    with tarfile.open(tarpath, "w") as t:
        t.add(str(src), arcname="untar")
    sh("tar -x -m --no-same-permissions --no-same-owner -f %s" % tarpath, cwd=root)
    assert read_file(P(root, "untar/x/y/z")) == "zz"
    # rm -r
    sh("rm -r a copy untar", cwd=root)
    assert tree(root) == []


def test_pending_file_in_renamed_dir(node):
    """A file created in a directory and not committed yet moves with the
    directory when it is renamed on the same mount, and commits there."""
    root = node.mnt
    os.mkdir(P(root, "d"))
    with open(P(root, "d/f"), "w") as f:
        os.rename(P(root, "d"), P(root, "e"))
        f.write("late")
    assert tree(root) == ["e/", "e/f=late"]
    expect = errno_of(lambda: os.rmdir(P(root, "e")))
    assert expect == errno.ENOTEMPTY


# ----------------------------------------------------------- two mounts

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    runner = CommandRunner()
    c = LaunchedCluster(tmp_path_factory.mktemp("namespace") / "cluster", runner)
    try:
        c.up(3)
        c.wait_leader()
        yield c
    finally:
        try:
            c.bring_down()
        finally:
            runner.close()


def test_tree_rename_is_atomic_across_mounts(cluster):
    """A tree renamed back and forth on one mount: a reader on another
    mount sees the whole tree under exactly one of the two names, every
    time, never a mix (one committed entry moves it; every read is at a
    read point)."""
    a, b = cluster.node(1), cluster.node(2)
    os.mkdir(a.path("t1"))
    for i in range(5):
        write_file(a.path("t1/f%d" % i), str(i))
    wait_for(lambda: os.path.exists(b.path("t1/f4")), 10, "tree on mount 2")
    stop = threading.Event()
    seen = []
    errors = []

    def reader():
        while not stop.is_set():
            try:
                names = set(os.listdir(b.mnt))
            except OSError as e:
                errors.append(e)
                return
            seen.append(("t1" in names, "t2" in names))

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(20):
            os.rename(a.path("t1"), a.path("t2"))
            # read-your-writes across mounts: a stat after the rename
            # returned sees it
            assert os.path.isdir(b.path("t2")) and not os.path.exists(b.path("t1"))
            assert sorted(os.listdir(b.path("t2"))) == ["f%d" % k for k in range(5)]
            os.rename(a.path("t2"), a.path("t1"))
    finally:
        stop.set()
        th.join(30)
    assert not errors
    assert seen
    assert all(x != y for x, y in seen), "a listing saw both or neither name"
    assert sorted(os.listdir(b.path("t1"))) == ["f%d" % k for k in range(5)]


def test_rmdir_race_across_mounts(cluster):
    """One mount removes a directory while another creates a file in it:
    the order of the log decides, and nothing is lost silently: either the
    file exists inside the directory, or its commit failed (ENOENT) and
    the directory is gone."""
    a, b = cluster.node(1), cluster.node(3)
    os.mkdir(a.path("race"))
    wait_for(lambda: os.path.isdir(b.path("race")), 10, "dir on mount 3")
    code = errno_of(lambda: write_file(b.path("race/f"), "x"))
    rc = errno_of(lambda: os.rmdir(a.path("race")))
    if code == 0:
        assert rc == errno.ENOTEMPTY
        assert read_file(a.path("race/f")) == "x"
    else:
        assert code == errno.ENOENT and rc == 0


def test_exclusive_create_in_directory_across_mounts(cluster):
    """O_CREAT|O_EXCL of one path below a directory, at once on three
    mounts: the log decides, exactly one creator succeeds, the others get
    EEXIST."""
    os.mkdir(cluster.node(1).path("locks"))
    for n in (2, 3):
        wait_for(lambda n=n: os.path.isdir(cluster.node(n).path("locks")), 10,
                 "locks/ on mount %d" % n)
    for i in range(5):
        name = "locks/l%d" % i
        start = threading.Barrier(3)
        results = {}

        def create(k):
            start.wait(10)
            try:
                os.close(os.open(cluster.node(k).path(name),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                results[k] = 0
            except OSError as e:
                results[k] = e.errno

        threads = [threading.Thread(target=create, args=(k,)) for k in (1, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results.values()) == [0, errno.EEXIST, errno.EEXIST], results


def last_block(n):
    head = n.status()["chain_head"]["index"]
    return read_file(n.path(".chain/%010d" % head))


def test_chain_shows_namespace_ops(node):
    """A shell's >> below a directory is one APPEND of the appended bytes;
    mkdir, rmdir and a rename with flags show in .chain by name."""
    root = node.mnt
    os.mkdir(P(root, "d"))
    assert 'op: owner uid=0 gid=0 mode=0755 mkdir key="d"' in last_block(node)
    write_file(P(root, "d/log"), "one\n")
    subprocess.run(["sh", "-c", "echo two >> '%s'" % P(root, "d/log")], check=True)
    assert 'op: if ident key="d/log"' in last_block(node)
    assert 'append key="d/log" len=4 value="two\\n"' in last_block(node)
    assert read_file(P(root, "d/log")) == "one\ntwo\n"
    write_file(P(root, "x"), "1")
    renameat2(P(root, "x"), P(root, "d/x"), RENAME_NOREPLACE)
    assert 'op: rename key="x" to="d/x" noreplace' in last_block(node)
    os.unlink(P(root, "d/x"))
    os.unlink(P(root, "d/log"))
    os.rmdir(P(root, "d"))
    assert 'op: rmdir key="d"' in last_block(node)


# ------------------------------------------------------------- xattrs

def block_hash(n, index):
    for line in read_file(n.path(".chain/%010d" % index)).splitlines():
        if line.startswith("hash: "):
            return line[6:]
    raise AssertionError("no hash line")


def test_paxos_xattrs(node):
    """user.paxos.revision is the block that last changed the key (also a
    directory), user.paxos.hash that block's chain hash; both read-only;
    other names have no value and cannot be stored."""
    root = node.mnt
    os.mkdir(P(root, "d"))
    drev = int(os.getxattr(P(root, "d"), "user.paxos.revision"))
    write_file(P(root, "d/k"), "one")
    rev = int(os.getxattr(P(root, "d/k"), "user.paxos.revision"))
    assert rev == node.status()["chain_head"]["index"] and rev > drev
    assert os.getxattr(P(root, "d/k"), "user.paxos.hash").decode() == block_hash(node, rev)
    assert set(os.listxattr(P(root, "d/k"))) >= {"user.paxos.revision", "user.paxos.hash"}
    write_file(P(root, "d/k"), "two")
    assert int(os.getxattr(P(root, "d/k"), "user.paxos.revision")) > rev
    assert int(os.getxattr(P(root, "d"), "user.paxos.revision")) == drev
    for call, code in [
            (lambda: os.setxattr(P(root, "d/k"), "user.paxos.revision", b"1"), errno.EPERM),
            (lambda: os.setxattr(P(root, "d/k"), "user.other", b"1"), errno.ENOTSUP),
            (lambda: os.getxattr(P(root, "d/k"), "user.other"), errno.ENODATA),
            (lambda: os.setxattr(P(root, "d/k"), "user.paxos.expect", b"5"), errno.EBADF),
            (lambda: os.getxattr(P(root, "nope"), "user.paxos.revision"), errno.ENOENT)]:
        assert errno_of(call) == code


def test_expect_is_compare_and_swap(cluster):
    """user.paxos.expect set on a descriptor: its next commit lands only if
    the key is still at that revision; a write from another mount in
    between makes the commit fail with ECANCELED and nothing changes."""
    a, b = cluster.node(1), cluster.node(2)
    write_file(a.path("cas"), "v1")
    rev = os.getxattr(b.path("cas"), "user.paxos.revision")
    fd = os.open(b.path("cas"), os.O_WRONLY | os.O_TRUNC)
    os.setxattr(b.path("cas"), "user.paxos.expect", rev)
    os.write(fd, b"v2")
    os.close(fd)                                  # still at rev: commits
    assert read_file(a.path("cas")) == "v2"
    rev = os.getxattr(b.path("cas"), "user.paxos.revision")
    fd = os.open(b.path("cas"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.setxattr(b.path("cas"), "user.paxos.expect", rev)
        assert os.getxattr(b.path("cas"), "user.paxos.expect") == rev
        write_file(a.path("cas"), "other")        # moves the key on
        os.write(fd, b"v3")
        with pytest.raises(OSError) as info:
            os.fsync(fd)
        assert info.value.errno == errno.ECANCELED
    finally:
        os.close(fd)
    assert read_file(a.path("cas")) == "other"
    assert read_file(b.path("cas")) == "other"


# ---------------------------------------------------- owners and modes

from test_fs_semantics import as_nobody, shared_node  # noqa: E402,F401

NOBODY = 65534


def test_owner_and_mode_of_creator(shared_node):
    """A key or directory records the uid, gid and mode (umask applied) of
    its creator; with --allow-other the kernel enforces them; chmod and
    chown commit an entry; explicit times are stored."""
    n = shared_node
    old = os.umask(0o027)
    try:
        os.mkdir(n.path("pub"), 0o777)
        os.chmod(n.path("pub"), 0o777)             # past the umask
        os.mkdir(n.path("priv"), 0o777)            # umask: 0750
        write_file(n.path("pub/rootfile"), "r")    # umask: 0640
    finally:
        os.umask(old)
    st = os.stat(n.path("priv"))
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o750)
    assert os.stat(n.path("pub")).st_mode & 0o7777 == 0o777
    assert os.stat(n.path("pub/rootfile")).st_mode & 0o7777 == 0o640
    # nobody creates in pub: the file is nobody's
    assert as_nobody(lambda: write_file(n.path("pub/mine"), "m")) == {"ok": None}
    st = os.stat(n.path("pub/mine"))
    assert st.st_uid == NOBODY
    assert as_nobody(lambda: os.mkdir(n.path("pub/d"), 0o700)) == {"ok": None}
    assert os.stat(n.path("pub/d")).st_uid == NOBODY
    # the kernel checks them (default_permissions)
    assert as_nobody(lambda: read_file(n.path("pub/rootfile"))) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.listdir(n.path("priv"))) == {"errno": errno.EACCES}
    assert as_nobody(lambda: os.chmod(n.path("pub/rootfile"), 0o666)) == {
        "errno": errno.EPERM}
    assert as_nobody(lambda: os.chmod(n.path("pub/mine"), 0o600)) == {"ok": None}
    assert os.stat(n.path("pub/mine")).st_mode & 0o7777 == 0o600
    os.chmod(n.path("pub/rootfile"), 0o644)
    assert as_nobody(lambda: read_file(n.path("pub/rootfile"))) == {"ok": "r"}
    os.chown(n.path("pub/rootfile"), NOBODY, NOBODY)
    assert as_nobody(lambda: write_file(n.path("pub/rootfile"), "now mine")) == {"ok": None}
    # explicit times, on a file and a directory (touch -d, tar x)
    subprocess.run(["touch", "-d", "2001-02-03 04:05:06Z", n.path("pub/rootfile"),
                    n.path("priv")], check=True)
    assert int(os.stat(n.path("pub/rootfile")).st_mtime) == 981173106
    assert int(os.stat(n.path("priv")).st_mtime) == 981173106
    # a rename keeps owner and mode
    os.rename(n.path("pub/mine"), n.path("priv/mine"))
    st = os.stat(n.path("priv/mine"))
    assert (st.st_uid, st.st_mode & 0o7777) == (NOBODY, 0o600)


def test_tar_keeps_times_and_modes(node, tmp_path):
    """tar x into the mount stores the archive's modes and times."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    os.chmod(src / "sub" / "f", 0o751)
    os.utime(src / "sub" / "f", (1_000_000_000, 1_000_000_000))
    os.utime(src / "sub", (1_100_000_000, 1_100_000_000))
    tarpath = tmp_path / "t.tar"
    with tarfile.open(tarpath, "w") as t:
        t.add(str(src), arcname="x")
    sh("tar -x -f %s" % tarpath, cwd=node.mnt)
    st = os.stat(P(node.mnt, "x/sub/f"))
    assert (st.st_mode & 0o7777, int(st.st_mtime)) == (0o751, 1_000_000_000)
    assert int(os.stat(P(node.mnt, "x/sub")).st_mtime) == 1_100_000_000


def test_fsync_of_key_and_directory(node):
    """fsync of a key returns once what was written through the descriptor
    is committed (the chain shows it before close); fsync of a directory
    succeeds: every namespace change was committed before it returned."""
    root = node.mnt
    os.mkdir(P(root, "d"))
    fd = os.open(P(root, "d/k"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"synced")
        os.fsync(fd)
        assert 'put key="d/k" len=6' in last_block(node)
        os.write(fd, b"!")
        os.fdatasync(fd)
        assert 'put key="d/k" len=7' in last_block(node)
    finally:
        os.close(fd)
    dfd = os.open(P(root, "d"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    assert tree(root) == ["d/", "d/k=synced!"]

"""A node that cannot persist - no descriptor left, a data disk that fails
every write, a full data disk - stops leading and voting, fails the calls
on its mount at once (ENOSPC when its disk is full, else EIO), says why in
.status and its log (stderr, and syslog: the log file may be on the failed
disk), and resumes by itself once persisting works again, catching up
what it missed; meanwhile the cluster fails over and keeps committing.

The disks are real: ext4 images on loop devices, shut down with the
EXT4_IOC_SHUTDOWN ioctl (what the kernel had not written is lost, as when
a disk dies) and mounted again through a new loop device; tmpfs mounts
filled up.  Every mount and loop device is released at teardown, after the
cluster is down, also when a test fails.  Syslog is checked through a
socket the test binds at /dev/log when the machine runs no syslog daemon
(else that check is left out).  Connections go to 127.0.0.1 only."""
import errno
import fcntl
import os
import select
import shutil
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

from conftest import is_mounted, read_file, wait_for, write_file

EXT4_IOC_SHUTDOWN = 0x8004587D          # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2         # unwritten data and journal lost


# ---------------------------------------------------------------- helpers

def attempt(fn, timeout):
    """fn() in a thread: ("ok", value), ("err", errno) or ("timeout", None)
    if it did not return within timeout seconds (a hung mount)."""
    box = {}

    def run():
        try:
            box["v"] = fn()
        except OSError as e:
            box["e"] = e.errno

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if "v" in box:
        return "ok", box["v"]
    if "e" in box:
        return "err", box["e"]
    return "timeout", None


def write_commits(c, k, name, data, timeout=10.0):
    """A write through node k's mount that returns (commits) within
    timeout seconds; returns how long it took."""
    t0 = time.monotonic()
    kind, value = attempt(lambda: write_file(c.node(k).path(name), data), timeout)
    assert kind == "ok", "write of %s on node %d: %s %s" % (
        name, k, kind, errno.errorcode.get(value, value) if value else "")
    return time.monotonic() - t0


def fails_fast(fn, expected, what, limit=2.0):
    """fn() fails with errno `expected` within `limit` seconds."""
    t0 = time.monotonic()
    kind, value = attempt(fn, limit + 8)
    took = time.monotonic() - t0
    assert kind == "err" and value == expected, "%s: %s %s after %.1fs, wanted %s" % (
        what, kind, errno.errorcode.get(value, value) if kind == "err" else value,
        took, errno.errorcode[expected])
    assert took < limit, "%s took %.1fs to fail" % (what, took)


def status(c, k):
    st = c.node(k).status_within(10)
    assert st is not None, "node %d did not answer .status" % k
    return st


def others_of(k):
    return [j for j in (1, 2, 3) if j != k]


def move_data(c, k, mount):
    """With the cluster down: put node k's backing directory on a new
    file system, mounted by mount(path) where the directory was."""
    data = c.node(k).data
    aside = data + ".moving"
    os.rename(data, aside)
    os.mkdir(data, 0o700)
    mount(data)
    os.chmod(data, 0o700)
    for name in os.listdir(aside):
        src = os.path.join(aside, name)
        if stat.S_ISSOCK(os.lstat(src).st_mode):
            continue            # admin.sock: bound anew at start
        subprocess.run(["cp", "-a", src, data], check=True)
    shutil.rmtree(aside)
    # on the new disk before the node starts: cp leaves it in the page
    # cache, and a disk shut down before writeback loses it (the node then
    # finds blocks it had made durable missing, test below)
    os.sync()


def cluster_on_disks(launched, mount):
    """A 3-node cluster whose nodes each keep their backing directory on
    a file system of its own (mount(path)); returns it, its leader and
    the two others."""
    c = launched(3)
    c.ok("down")
    for k in (1, 2, 3):
        move_data(c, k, mount)
    c.up(3)
    sick = c.wait_leader()
    return c, sick, others_of(sick)


def fill_disk(data):
    """Fill the file system under node directory `data` with a file of
    zeros (to the last 4 KiB); returns its path, to free the space."""
    filler = os.path.join(data, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


class Disks:
    """Mounts (ext4 images on loop devices, tmpfs) the test makes, all
    released by release(): unmounted (lazily if a process still holds
    them) and every loop device detached."""

    def __init__(self, base):
        self.base = str(base)
        self.mounts = []        # paths, in mount order
        self.loops = []         # loop devices attached
        self.images = {}        # mount path -> image file

    def _run(self, argv):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "%s: %s%s" % (" ".join(argv), r.stdout, r.stderr)
        return r.stdout.strip()

    def _attach(self, image):
        dev = self._run(["losetup", "--find", "--show", image])
        self.loops.append(dev)
        return dev

    def ext4(self, path, size_mb=64):
        image = os.path.join(self.base, "disk-%d.img" % len(self.images))
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        self._run(["mkfs.ext4", "-q", "-F", image])
        dev = self._attach(image)
        self._run(["mount", dev, path])
        self.mounts.append(path)
        self.images[path] = image

    def tmpfs(self, path, size="24m"):
        self._run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path])
        self.mounts.append(path)

    def shutdown(self, path):
        """The disk under path dies: every later write, read and sync of
        that file system fails with EIO."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)

    def replace(self, path):
        """The disk works again: the dead mount is detached (the node still
        holds files on it) and the image is mounted anew at path through
        a new loop device (the old one keeps the dead file system)."""
        self._run(["umount", "--lazy", path])
        dev = self._attach(self.images[path])
        self._run(["mount", dev, path])
        self.mounts.append(path)

    def release(self):
        errors = []
        for path in reversed(self.mounts):
            while is_mounted(path):
                r = subprocess.run(["umount", path], capture_output=True, text=True)
                if r.returncode != 0:
                    r = subprocess.run(["umount", "--lazy", path], capture_output=True,
                                       text=True)
                    if r.returncode != 0:
                        errors.append("umount %s: %s" % (path, r.stderr.strip()))
                        break
        for dev in self.loops:
            # detaches now, or (autoclear) once the last user is gone
            subprocess.run(["losetup", "--detach", dev], capture_output=True)
        return errors


@pytest.fixture
def disks(tmp_path):
    """Request it before `launched`: it is released after the cluster is
    down."""
    if os.geteuid() != 0:
        pytest.skip("mounting file systems needs root")
    # root in a container may still be refused mounts
    probe = os.path.join(str(tmp_path), "mount-probe")
    os.mkdir(probe)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(probe)
        pytest.skip("cannot mount here: %s" % r.stderr.strip())
    subprocess.run(["umount", probe], capture_output=True)
    os.rmdir(probe)
    d = Disks(tmp_path)
    yield d
    errors = d.release()
    assert not errors, "\n".join(errors)


def loop_devices_work(tmp_path):
    for tool in ("losetup", "mkfs.ext4", "mount"):
        if not shutil.which(tool):
            return "%s not found" % tool
    image = os.path.join(str(tmp_path), "probe.img")
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    r = subprocess.run(["losetup", "--find", "--show", image], capture_output=True, text=True)
    os.unlink(image)
    if r.returncode != 0:
        return "no loop device: %s" % r.stderr.strip()
    subprocess.run(["losetup", "--detach", r.stdout.strip()], capture_output=True)
    return None


class SyslogListener:
    """Receives what processes send to syslog, when this machine runs no
    syslog daemon: binds /dev/log (and removes it at close).  `owned` is
    False when /dev/log exists already: nothing can be checked then."""

    def __init__(self):
        self.lines = []
        self.lock = threading.Lock()
        self.owned = False
        self.sock = None
        if os.path.exists("/dev/log"):
            return
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind("/dev/log")
        except OSError:
            self.sock.close()
            self.sock = None
            return
        os.chmod("/dev/log", 0o666)
        self.ino = os.stat("/dev/log").st_ino
        self.owned = True
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        # drain at once: a sender blocks while our queue is full
        while not self.stopping:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                data = self.sock.recv(65536)
                with self.lock:
                    self.lines.append(data.decode("utf-8", "replace"))

    def text(self):
        with self.lock:
            return "\n".join(self.lines)

    def close(self):
        if not self.owned:
            return
        self.stopping = True
        self.thread.join(5)
        try:
            if os.stat("/dev/log").st_ino == self.ino:
                os.unlink("/dev/log")
        except FileNotFoundError:
            pass
        self.sock.close()


@pytest.fixture
def syslog():
    s = SyslogListener()
    yield s
    s.close()


class ConnectFlood:
    """Plain TCP connections to 127.0.0.1:port held open (each one costs
    the node a descriptor once it accepts it) and opened again as the node
    closes them (it drops unfinished handshakes after 5 s), until stop()."""

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.socks = []
        self.opened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping.is_set():
            if self.socks:
                ready, _, _ = select.select(self.socks, [], [], 0)
                for s in ready:
                    try:
                        gone = not s.recv(4096)
                    except OSError:
                        gone = True
                    if gone:
                        self.socks.remove(s)
                        s.close()
            while len(self.socks) < self.count and not self.stopping.is_set():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", self.port))
                _, ready, _ = select.select([], [s], [], 0.2)
                if not ready or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    s.close()       # the node's backlog is full: later
                    break
                self.socks.append(s)
                self.opened += 1
            self.stopping.wait(0.05)

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()
        self.socks = []


def wait_failed(c, k, timeout=30.0, write_through=None):
    """Wait until node k's .status says it is not healthy (it found that
    it cannot persist), writing through the nodes in write_through
    meanwhile (each write must commit: the cluster keeps committing)."""
    i = [0]

    def failed():
        if write_through:
            j = write_through[i[0] % len(write_through)]
            write_commits(c, j, "meanwhile-%d" % i[0], "m%d\n" % i[0])
            i[0] += 1
        st = c.node(k).status_within(5)
        return st if st and st.get("healthy") is False else None

    return wait_for(failed, timeout, "node %d to find it cannot persist" % k, interval=0.05)


def check_storage_failed(c, k, errnum, error):
    st = status(c, k)
    assert "storage" in st, "no storage in node %d's .status: %s" % (k, st)
    assert st["storage"]["state"] != "ok", st["storage"]
    assert st["storage"]["errno"] == errnum and st["storage"]["error"] == error, st["storage"]


def check_sick(c, k, errnum):
    """Node k neither leads nor votes (its replica is suspended: it follows
    nobody and ignores what it receives, so it names no leader), and every
    call on its mount fails at once with errnum."""
    st = status(c, k)
    assert st["healthy"] is False and st["voting"] is False, st
    assert st["role"] == "follower" and st["leader"] == 0, st
    fails_fast(lambda: write_file(c.node(k).path("refused"), "x\n"), errnum,
               "a write on node %d" % k)
    fails_fast(lambda: read_file(c.node(k).path("before")), errnum, "a read on node %d" % k)


def check_back(c, k, written, timeout):
    """Within timeout seconds node k's mount serves what was written
    elsewhere meanwhile and a write through it commits."""
    def back():
        for name, data in written:
            kind, value = attempt(lambda: read_file(c.node(k).path(name)), 5)
            if kind != "ok" or value != data:
                return False
        kind, _ = attempt(lambda: write_file(c.node(k).path("back"), "back\n"), 5)
        return kind == "ok"

    try:
        wait_for(back, timeout, "node %d to serve reads and writes again" % k, interval=0.1)
    except AssertionError as e:
        # what the node did meanwhile: its log (on the disk mounted again)
        # and its .status, so a failure says why
        raise AssertionError("%s\nnode %d .status: %s\nnode %d log (end):\n%s" % (
            e, k, c.node(k).status_within(5), k, c.node(k).log()[-6000:])) from None
    st = status(c, k)
    assert st["storage"]["state"] == "ok" and st["storage"]["recoveries"] >= 1, st["storage"]
    assert st["healthy"] is True
    for j in others_of(k):
        wait_for(lambda j=j: attempt(lambda: read_file(c.node(j).path("back")), 5)
                 == ("ok", "back\n"), 10, "node %d to read what node %d wrote" % (j, k))


# ------------------------------------------------------------------ tests

def test_descriptor_flood_fails_over_and_the_node_resumes(launched):
    """Nodes limited to 256 descriptors; a flood of TCP connects held open
    against the leader makes its chain fdatasync fail with EMFILE: it stops
    leading, the others elect a leader and writes through their mounts
    keep committing; its own mount fails at once with EIO.  Once the flood
    is over its mount serves reads and writes again within 10 s, without a
    restart."""
    c = launched(3, launcher_args=["--nofile", "256"])
    flooded = c.wait_leader()
    others = others_of(flooded)
    with open("/proc/%d/limits" % c.node(flooded).pid) as f:
        limit = [line.split()[3:5] for line in f if line.startswith("Max open files")][0]
    assert limit == ["256", "256"], limit
    write_commits(c, others[0], "before", "b\n")
    flood = ConnectFlood(c.node(flooded).port, 400).start()
    try:
        wait_failed(c, flooded, write_through=others)
        leader = c.wait_leader(among=others, exclude=(flooded,), majority=True, timeout=15)
        written = []
        for i in range(6):
            name = "during-%d" % i
            write_commits(c, others[i % 2], name, "d%d\n" % i)
            written.append((name, "d%d\n" % i))
        check_sick(c, flooded, errno.EIO)
        check_storage_failed(c, flooded, errno.EMFILE, "Too many open files")
        assert flood.opened > 256, flood.opened
    finally:
        flood.stop()
    check_back(c, flooded, written, timeout=10)
    log = c.node(flooded).log()
    assert "node %d: cannot persist:" % flooded in log and "Too many open files" in log, log[-3000:]
    assert "node %d: storage works again" % flooded in log, log[-3000:]
    assert leader in others


def test_a_leader_whose_disk_dies_steps_down_and_rejoins(disks, syslog, launched, tmp_path):
    """Each node on its own ext4 image; the leader's disk dies (shut down:
    every write and sync fails with EIO, what was not yet written is
    lost).  The first write after that, through another mount, commits
    within a few election timeouts; a new leader is elected; calls on the
    dead node's mount fail at once with EIO; the failure is in syslog.
    Once the image is mounted again the node re-verifies it, rejoins and
    catches up by itself, and its log (on that disk) says what failed."""
    why = loop_devices_work(tmp_path)
    if why:
        pytest.skip(why)
    c, sick, others = cluster_on_disks(launched, disks.ext4)
    write_commits(c, others[0], "before", "b\n")
    disks.shutdown(c.node(sick).data)
    replaced = False
    try:
        took = write_commits(c, others[0], "first", "f\n")
        assert took < 5.0, "the first write after the disk died took %.1fs" % took
        leader = c.wait_leader(among=others, exclude=(sick,), majority=True, timeout=10)
        assert leader in others
        written = [("first", "f\n")]
        for i in range(6):
            name = "during-%d" % i
            write_commits(c, others[i % 2], name, "d%d\n" % i)
            written.append((name, "d%d\n" % i))
        check_sick(c, sick, errno.EIO)
        check_storage_failed(c, sick, errno.EIO, "Input/output error")
        if syslog.owned:
            wait_for(lambda: "node %d: cannot persist:" % sick in syslog.text(), 10,
                     "the failure in syslog")
            assert "Input/output error" in syslog.text()
        disks.replace(c.node(sick).data)
        replaced = True
    finally:
        if not replaced:        # the teardown reads the node's log there
            disks.replace(c.node(sick).data)
    check_back(c, sick, written, timeout=30)
    log = read_file(c.node(sick).logpath)
    assert "node %d: storage works again" % sick in log, log[-3000:]
    assert "it had failed:" in log and "Input/output error" in log, log[-3000:]
    if syslog.owned:
        assert "node %d: storage works again" % sick in syslog.text()


def test_a_full_disk_fails_writers_with_enospc_and_the_node_catches_up(disks, syslog,
                                                                        launched):
    """Each node on its own small tmpfs; the leader's fills up.  Writers on
    its mount get ENOSPC (at once, once it knows), the others elect a
    leader and keep committing, the failure is in syslog; after space is
    freed the node resumes and catches up by itself, and its log says what
    had failed."""
    c, sick, others = cluster_on_disks(launched, disks.tmpfs)
    write_commits(c, others[0], "before", "b\n")
    filler = fill_disk(c.node(sick).data)

    # the first writes that need the disk fail with ENOSPC (not a timeout)
    big = "x" * (256 << 10)
    results = []
    for i in range(4):
        results.append(attempt(lambda i=i: write_file(c.node(sick).path("big-%d" % i), big),
                               12))
        if results[-1] == ("err", errno.ENOSPC):
            break
    assert results[-1] == ("err", errno.ENOSPC), results
    assert ("timeout", None) not in results, results
    wait_failed(c, sick, timeout=10)
    leader = c.wait_leader(among=others, exclude=(sick,), majority=True, timeout=15)
    assert leader in others
    written = []
    for i in range(6):
        name = "during-%d" % i
        write_commits(c, others[i % 2], name, "d%d\n" % i)
        written.append((name, "d%d\n" % i))
    check_sick(c, sick, errno.ENOSPC)
    check_storage_failed(c, sick, errno.ENOSPC, "No space left on device")
    if syslog.owned:
        wait_for(lambda: "node %d: cannot persist:" % sick in syslog.text(), 10,
                 "the failure in syslog")
        assert "No space left on device" in syslog.text()

    os.unlink(filler)
    check_back(c, sick, written, timeout=30)
    log = read_file(c.node(sick).logpath)
    assert "node %d: storage works again" % sick in log, log[-3000:]
    assert "it had failed:" in log and "No space left on device" in log, log[-3000:]


def test_a_disk_that_lost_durable_blocks_is_repaired_when_it_works_again(disks, syslog,
                                                                        launched):
    """Each node on its own small tmpfs; the leader's fills up and, while
    it cannot persist, its chain loses blocks it had made durable (the
    last segment cut short, as a disk that dies loses what it had not
    written to the platter).  Once space is freed the reopen finds the
    chain damaged (it ends before the block the acceptor store recorded
    as durable): the node moves the damaged segment and its acceptor log
    to DIR/damaged/<incident>/, recovers, learns the blocks again from the
    peers and serves reads and writes, with no operator action; the
    incident is under the mount.  (Before, the reopen failed on the same
    damage every second, for good.)"""
    from test_storage_damage import segments
    c, sick, others = cluster_on_disks(launched, disks.tmpfs)
    for i in range(20):
        write_commits(c, others[i % 2], "before-%d" % i, "b%d\n" % i)
    filler = fill_disk(c.node(sick).data)
    big = "x" * (256 << 10)
    for i in range(4):
        if attempt(lambda i=i: write_file(c.node(sick).path("big-%d" % i), big),
                   12) == ("err", errno.ENOSPC):
            break
    wait_failed(c, sick, timeout=10)
    c.wait_leader(among=others, exclude=(sick,), majority=True, timeout=15)
    written = [("before-%d" % i, "b%d\n" % i) for i in range(20)]
    for i in range(6):
        write_commits(c, others[i % 2], "during-%d" % i, "d%d\n" % i)
        written.append(("during-%d" % i, "d%d\n" % i))
    seg = segments(c.node(sick).data)[-1]
    os.truncate(seg, 96)            # inside the segment's first block
    os.unlink(filler)
    check_back(c, sick, written, timeout=30)
    incidents = wait_for(lambda: (lambda t: t if " repaired: " in t else None)(
        read_file(c.node(sick).path(".chain/incidents"))), 20, "the incident closed")
    assert " found: chain damaged: " in incidents and os.path.basename(seg) in incidents, incidents
    assert " moved: " in incidents and " repaired: " in incidents, incidents
    log = read_file(c.node(sick).logpath)
    assert "acceptor store recorded block" in log, log[-3000:]

"""Client-only mounts (`paxosfs --client`, node/remote.c, node/serve.c):
a mount without a backing directory and without a vote, served by the
nodes' client ports.  Started and stopped through tools/cluster
(`up --clients`, `client`, `down`); every process is stopped by its pid
at teardown (the `launched` fixture), also when a test fails.

What is checked: writes on the client mount are seen at once on the
server mounts and the other way round (linearizable reads: a file created
on one mount is immediately there on another), and the mount keeps
working, losing no acknowledged write, when the leader is killed and when
the node it uses is killed."""
import errno
import json
import os
import signal
import struct
import threading
import time

import zmq

import hostile
from conftest import SUSPICIOUS, read_file, wait_for, write_file


def client_mnt(c, k=0):
    return c.info()["clients"][k]["mnt"]


def client_status(c, k=0):
    with open(os.path.join(client_mnt(c, k), ".status")) as f:
        return json.load(f)


def check_client_logs(c):
    """Stop the cluster (`down` stops the clients first) and check that no
    client logged a sanitizer report or crash, at exit included."""
    recs = c.info().get("clients", [])
    c.ok("down")
    for rec in recs:
        if os.path.exists(rec["log"]):
            text = read_file(rec["log"])
            for bad in SUSPICIOUS:
                assert bad not in text, "client logged %r:\n%s" % (bad, text[-4000:])


def test_client_mount_writes_and_reads_both_ways(launched):
    c = launched(3, launcher_args=["--clients", 1])
    cm = client_mnt(c)
    st = client_status(c)
    assert st["client"] is True and st["connected"] is True
    assert st["server"] in (1, 2, 3)
    assert st["server_status"]["id"] == st["server"]
    # created on the client: at once on every server mount
    for i in range(20):
        write_file(os.path.join(cm, "from-client-%d" % i), "c%d\n" % i)
        for n in c.nodes:
            assert read_file(n.path("from-client-%d" % i)) == "c%d\n" % i
    # created on a server mount: at once on the client (stat, then open)
    for i in range(20):
        n = c.nodes[i % 3]
        write_file(n.path("from-node-%d" % i), "n%d\n" % i)
        assert os.stat(os.path.join(cm, "from-node-%d" % i)).st_size == len("n%d\n" % i)
        assert read_file(os.path.join(cm, "from-node-%d" % i)) == "n%d\n" % i
    # the namespace: a directory, a rename and a removal cross both ways
    os.mkdir(os.path.join(cm, "d"))
    write_file(os.path.join(cm, "d", "f"), "x\n")
    os.rename(c.node(2).path("d/f"), c.node(2).path("d/g"))
    assert sorted(os.listdir(os.path.join(cm, "d"))) == ["g"]
    os.unlink(os.path.join(cm, "d", "g"))
    assert not os.path.exists(c.node(3).path("d/g"))
    # a file the client has open follows a change made elsewhere
    with open(os.path.join(cm, "from-node-0")) as f:
        write_file(c.node(1).path("from-node-0"), "replaced\n")
        assert read_file(os.path.join(cm, "from-node-0")) == "replaced\n"
        f.close()
    # O_EXCL across mounts: exactly one creator
    fd = os.open(c.node(1).path("excl"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    try:
        os.open(os.path.join(cm, "excl"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        assert False, "O_EXCL create succeeded on a second mount"
    except FileExistsError:
        pass
    # .chain is readable through the client, and so is .cluster/members
    # (the configuration in force as the server it uses sees it)
    assert "hash:" in read_file(os.path.join(cm, ".chain", "%010d" % 1))
    rows = [l.split() for l in read_file(os.path.join(cm, ".cluster", "members"))
            .splitlines() if l and not l.startswith("#")]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (str(n.id), "127.0.0.1:%d" % n.port, "voter") for n in c.nodes], rows
    assert os.statvfs(cm).f_files >= 0
    # a second client mount sees the first one's writes
    c.ok("client")
    cm2 = client_mnt(c, 1)
    write_file(os.path.join(cm, "between-clients"), "b\n")
    assert read_file(os.path.join(cm2, "between-clients")) == "b\n"
    check_client_logs(c)


class Writer:
    """Writes key i = "v<i>" one after another on a mount until stopped;
    records which writes returned success (acknowledged) and which failed."""

    def __init__(self, mnt, prefix):
        self.mnt, self.prefix = mnt, prefix
        self.acked, self.failed = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            path = os.path.join(self.mnt, "%s%d" % (self.prefix, i))
            try:
                with open(path, "w") as f:
                    f.write("v%d\n" % i)
                self.acked.append(i)
            except OSError as e:
                self.failed.append((i, e.errno))
            i += 1

    def count(self):
        return len(self.acked)

    def finish(self):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "writer hung"


def check_acked(mnts, prefix, acked):
    for mnt in mnts:
        for i in acked:
            assert read_file(os.path.join(mnt, "%s%d" % (prefix, i))) == "v%d\n" % i, \
                "acknowledged write %d lost on %s" % (i, mnt)


def test_client_mount_through_leader_failover(launched):
    c = launched(3, launcher_args=["--clients", 1])
    cm = client_mnt(c)
    leader = c.wait_leader()
    w = Writer(cm, "k")
    try:
        wait_for(lambda: w.count() >= 50, 30, "writes before the failover")
        pid = c.node(leader).pid
        c.kill(leader)
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] in "ZX"
        before = w.count()
        wait_for(lambda: w.count() >= before + 100, 60, "writes after the failover")
    finally:
        w.finish()
    assert not w.failed, "writes failed through the failover: %s" % w.failed[:10]
    rest = [n.mnt for n in c.nodes if n.id != leader]
    new = c.wait_leader(exclude=(leader,))
    assert new != leader
    check_acked(rest + [cm], "k", w.acked)
    st = client_status(c)
    assert st["server"] != leader
    # the client moves to the new leader once it is known
    wait_for(lambda: client_status(c)["server"] == new, 30, "the client on the new leader")
    check_client_logs(c)


def test_client_mount_survives_stop_of_its_server(launched):
    c = launched(3, launcher_args=["--clients", 1])
    cm = client_mnt(c)
    leader = c.wait_leader()
    # steady: the client on the leader (it moves there), then that node goes
    wait_for(lambda: client_status(c)["server"] == leader, 30, "the client on the leader")
    used = leader
    w = Writer(cm, "s")
    try:
        wait_for(lambda: w.count() >= 50, 30, "writes before the stop")
        c.kill(used)
        before = w.count()
        wait_for(lambda: w.count() >= before + 100, 60, "writes after the stop")
        # reads through the client keep working: linearizable against a
        # write made on a surviving server mount
        other = next(n for n in c.nodes if n.id != used)
        write_file(other.path("after-stop"), "yes\n")
        assert read_file(os.path.join(cm, "after-stop")) == "yes\n"
    finally:
        w.finish()
    assert not w.failed, "writes failed after the node was stopped: %s" % w.failed[:10]
    st = client_status(c)
    assert st["server"] != used and st["failovers"] >= 1
    check_acked([n.mnt for n in c.nodes if n.id != used] + [cm], "s", w.acked)
    # the stopped node comes back and holds the client's writes
    c.start(used)
    n = c.node(used)
    last = w.acked[-1]
    wait_for(lambda: os.path.exists(n.path("s%d" % last)), 60, "node %d caught up" % used)
    check_acked([n.mnt], "s", w.acked)
    check_client_logs(c)


def test_client_mount_through_removal_of_its_server(launched):
    """The server the client uses (the leader: the client moves there) is
    removed through the protocol (`tools/cluster remove`) while a writer
    and a reader run on the client mount: the removed node refuses with
    EROFS from the moment the removal commits until it is stopped, and the
    client takes that as "use another server", so no write and no read
    fails, and every acknowledged write is on the remaining members."""
    c = launched(3, launcher_args=["--clients", 1])
    cm = client_mnt(c)
    leader = c.wait_leader()
    wait_for(lambda: client_status(c)["server"] == leader, 30, "the client on the leader")
    write_file(os.path.join(cm, "probe"), "0\n")
    w = Writer(cm, "r")
    read_errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                read_file(os.path.join(cm, "probe"))
                os.stat(os.path.join(cm, "probe"))
                reads[0] += 1
            except OSError as e:
                read_errors.append(errno.errorcode.get(e.errno, e.errno))
    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    try:
        wait_for(lambda: w.count() >= 50, 30, "writes before the removal")
        r = c.ok("remove", leader, timeout=120)
        print(r.stdout.strip())
        before, rbefore = w.count(), reads[0]
        wait_for(lambda: w.count() >= before + 100, 60, "writes after the removal")
        wait_for(lambda: reads[0] >= rbefore + 100, 60, "reads after the removal")
        rest = [n for n in c.nodes if n.id != leader]
        write_file(rest[0].path("probe"), "1\n")
        assert read_file(os.path.join(cm, "probe")) == "1\n"
    finally:
        stop.set()
        w.finish()
        rt.join(60)
    assert not w.failed, "writes failed through the removal: %s" % w.failed[:10]
    assert not read_errors, "reads failed through the removal: %s" % read_errors[:10]
    st = client_status(c)
    assert st["server"] != leader
    check_acked([n.mnt for n in rest] + [cm], "r", w.acked)
    check_client_logs(c)


# ------------------------------------------------ the client port, hostile

WIRE_MOUNT_REQ, WIRE_MOUNT_MSG = 8, 9
HELLO, SUBMIT, BARRIER, READ = 1, 2, 3, 4
BEAT, ENTRY = 1, 4


def mount_req(op, rid=0, client_id=0, arg=0, flags=0, mx=0, data=b""):
    """A MOUNT_REQ frame (net/wire_mount.h: 37 fixed bytes, then data)."""
    body = struct.pack("<BQQQIII", op, rid, client_id, arg, flags, mx, len(data)) + data
    return hostile.frame(WIRE_MOUNT_REQ, body)


def msg_op(frame):
    """(kind, op, rid) of a frame a node sent."""
    kind = frame[5]
    op, rid = struct.unpack_from("<BQ", frame, 12)
    return kind, op, rid


def test_client_port_drops_malformed_frames(launched):
    """Whatever a key holder sends to a client port, the node drops what
    does not decode (counted in .status), keeps serving its mount and its
    clients, and answers a well-formed client on the same connection."""
    c = launched(3)
    key = hostile.load_key(c.info()["key"])
    n1 = c.node(1)
    port = c.record(1)["client_port"]
    ctx = zmq.Context()
    socks = []

    def dealer():
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_publickey, s.curve_secretkey = key
        s.curve_serverkey = key[0]
        s.connect("tcp://127.0.0.1:%d" % port)
        socks.append(s)
        return s

    def answer(s, want_op, want_rid=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if s.poll(100):
                f = s.recv()
                kind, op, rid = msg_op(f)
                assert kind == WIRE_MOUNT_MSG
                if op == want_op and want_rid in (None, rid):
                    return f
        raise AssertionError("no answer (op %d) from the client port" % want_op)

    try:
        write_file(n1.path("k"), "value\n")
        s = dealer()
        bad = [b"", b"\0", b"garbage" * 10,
               mount_req(HELLO, client_id=7)[:-1],                 # truncated
               mount_req(HELLO, client_id=7) + b"x",               # trailing
               mount_req(99, client_id=7),                         # unknown op
               mount_req(HELLO, client_id=0),                      # no session
               mount_req(READ, rid=1, data=b"k", flags=8),         # unknown flag
               mount_req(SUBMIT, rid=1, client_id=7, data=b""),    # empty op
               hostile.frame(WIRE_MOUNT_MSG, b"\0" * 97),          # wrong kind
               struct.pack("<IBBHI", 0x53465850, 1, WIRE_MOUNT_REQ, 0, 1 << 30)]
        for f in bad:
            s.send(f)
        s.send_multipart([b"two", b"parts"])
        s.send(mount_req(READ, rid=5, data=b"k", flags=1))  # before HELLO
        # a request before HELLO is answered ENOTCONN (a node restarted
        # under a connection: the client says HELLO and asks again)
        f = answer(s, ENTRY, 5)
        assert struct.unpack_from("<i", f, 21)[0] == -errno.ENOTCONN
        s.send(mount_req(HELLO, client_id=7))
        answer(s, BEAT)
        s.send(mount_req(READ, rid=6, data=b"k", flags=1))
        f = answer(s, ENTRY, 6)
        assert f.endswith(b"value\n")
        # a message above one op: the connection is dropped by ZeroMQ
        big = dealer()
        big.send(b"\0" * (5 << 20))
        st = wait_for(lambda: (lambda x: x if x["clients"]["malformed"] >= len(bad) + 1
                               and x["clients"]["before_hello"] >= 1 else None)(n1.status()),
                      20, "the bad frames counted")
        assert st["clients"]["connected"] >= 1
        # the node and its mount are fine, and so is a client mount
        write_file(n1.path("after"), "ok\n")
        assert read_file(c.node(2).path("after")) == "ok\n"
        c.ok("client")
        assert read_file(os.path.join(client_mnt(c), "after")) == "ok\n"
        assert "AddressSanitizer" not in n1.log()
    finally:
        for s in socks:
            s.close(0)
        ctx.term()
    check_client_logs(c)


def test_client_mount_after_a_gap_in_its_stream(launched):
    """A client stalled longer than its node keeps it subscribed (5 s)
    while more keys changed than the nodes keep for resuming clients
    (--client-ring 4): it subscribes again, is told of the gap, reads
    every key its mount holds again (a removed one included) and goes on.
    A read that waited in the kernel meanwhile is answered within a few
    seconds (sent again after the switch), not failed at its deadline."""
    c = launched(3, extra=["--client-ring", "4"], launcher_args=["--clients", 1])
    cm = client_mnt(c)
    rec = c.info()["clients"][0]
    write_file(os.path.join(cm, "g"), "old\n")
    write_file(os.path.join(cm, "h"), "old\n")
    assert os.stat(os.path.join(cm, "g")).st_size == 4
    used = client_status(c)["server"]
    os.kill(rec["pid"], signal.SIGSTOP)
    try:
        wait_for(lambda: c.node(used).status()["clients"]["connected"] == 0, 30,
                 "node %d forgetting the stalled client" % used)
        other = c.node(used % 3 + 1)
        for i in range(10):
            write_file(other.path("gap%d" % i), "%d\n" % i)
        os.unlink(other.path("g"))
        write_file(other.path("h"), "new\n")
        got, tid = [], []

        def read_h():
            tid.append(threading.get_native_id())
            got.append(read_file(os.path.join(cm, "h")))
        reader = threading.Thread(target=read_h, daemon=True)
        reader.start()

        def waits_in_fuse():
            try:
                with open("/proc/self/task/%d/wchan" % tid[0]) as f:
                    w = f.read()
            except (IndexError, OSError):
                return False
            return "fuse" in w or "request_wait_answer" in w
        wait_for(waits_in_fuse, 10, "the read waiting for the stopped client")
    finally:
        os.kill(rec["pid"], signal.SIGCONT)
    reader.join(8)
    assert got == ["new\n"], "a read queued while the client stalled: %r" % got
    st = wait_for(lambda: (lambda s: s if s["stream_gaps"] >= 1 and s["rechecked_keys"] >= 2
                           else None)(client_status(c)), 30, "the client resuming past a gap")
    assert st["connected"]
    assert not os.path.exists(os.path.join(cm, "g"))
    assert read_file(os.path.join(cm, "h")) == "new\n"
    for i in range(10):
        assert read_file(os.path.join(cm, "gap%d" % i)) == "%d\n" % i
    write_file(os.path.join(cm, "after-gap"), "x\n")
    assert read_file(other.path("after-gap")) == "x\n"
    check_client_logs(c)


def test_client_mount_streams_the_chain(launched):
    """.chain/stream on a client mount: every block committed after it was
    opened, in order, as the node's heartbeat reports the chain grew
    (node/remote.c on_beat wakes the waiting readers)."""
    c = launched(3, launcher_args=["--clients", 1])
    cm = client_mnt(c)
    fd = os.open(os.path.join(cm, ".chain/stream"), os.O_RDONLY)
    got = []
    def reader():
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                got.append(chunk)
        except OSError:
            return
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        names = ["cs%d" % i for i in range(10)]
        for i, name in enumerate(names):
            write_file(c.node(1 + i % 3).path(name), "v%d\n" % i)
        wait_for(lambda: all(('key="%s"' % n).encode() in b"".join(got)
                             for n in names), 20, "every write in the stream")
    finally:
        os.close(fd)
    check_client_logs(c)

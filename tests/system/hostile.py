"""A hostile peer for the system tests: frames in the paxosfs wire format
(net/wire.h, net/wire.c offset tables), ZeroMQ clients with and without the
cluster key (net/keys.c key file), a raw-TCP client that never finishes its
handshake, and the measurements the tests make (RSS, write latency).

Everything here talks only to 127.0.0.1 and stops by itself: every loop is
bounded by a deadline or a count."""
import os
import socket
import statistics
import struct
import threading
import time

import zmq

# net/wire.h
WIRE_MAGIC = 0x53465850
WIRE_VERSION = 2
WIRE_PAXOS = 1
WIRE_MAX_FRAME = 64 << 20

# consensus/px.h enum px_msg_type
PREPARE, PROMISE, ACCEPT, ACCEPTED, REJECT, HEARTBEAT, HEARTBEAT_ACK, \
    FORWARD, CATCHUP_REQ, CATCHUP, SNAPSHOT_NEEDED, COMMIT = range(1, 13)

# the largest round the replica accepted before ballots were bounded
# (consensus/px_int.h PX_ROUND_MAX was 2^62: rounds below it were valid)
OLD_ROUND_MAX = (1 << 62) - 1

# chain/kv.h op types
KV_PUT, KV_DEL, KV_APPEND, KV_RENAME = 1, 2, 3, 4


def load_key(path):
    """(public, secret) Z85 strings of a cluster key file (net/keys.h)."""
    pub = sec = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("public:"):
                pub = line.split(":", 1)[1].strip()
            elif line.startswith("secret:"):
                sec = line.split(":", 1)[1].strip()
    assert pub and sec, "no key in %s" % path
    return pub.encode(), sec.encode()


# ------------------------------------------------------------------ frames

def frame(kind, body):
    return struct.pack("<IBBHI", WIRE_MAGIC, WIRE_VERSION, kind, 0, len(body)) + body


def paxos(mtype, frm, to, ballot=(0, 0), slot=0, commit=0, aux=0,
          aux_ballot=(0, 0), chain_index=0, chain_hash=b"\0" * 32,
          lease_round=0, lease_ms=0, entries=(), requests=()):
    """A PAXOS frame (wire.c: fixed part of 117 bytes, then entries
    (slot, (round, node), time_ms, kind, data) and requests
    (client_id, seq, ack_seq, op))."""
    body = [struct.pack("<BIIQIQQQQIQ", mtype, frm, to, ballot[0], ballot[1], slot,
                        commit, aux, aux_ballot[0], aux_ballot[1], chain_index),
            chain_hash, struct.pack("<QI", lease_round, lease_ms),
            struct.pack("<II", len(entries), len(requests))]
    for slot_, (rnd, node), time_ms, kind, data in entries:
        body += [struct.pack("<QQIQBI", slot_, rnd, node, time_ms, kind, len(data)), data]
    for client, seq, ack, op in requests:
        body += [struct.pack("<QQQI", client, seq, ack, len(op)), op]
    return frame(WIRE_PAXOS, b"".join(body))


WIRE_PART_BYTES = 64 << 10


def both_forms(data):
    """A frame as this version sends it (pieces) followed by the frame as
    one message, as nodes sent frames before they went in pieces: each
    version drops the form it does not speak, so one attack runs against
    the old code and the new alike (the regression tests show that it
    worked on the old)."""
    return pieces(data) + [data]


def pieces(data):
    """A frame as the pieces (one ZeroMQ message each) a node sends it in
    (net/wire.h): a flags byte (1 first, 2 last) and up to 64 KiB."""
    cuts = [data[i:i + WIRE_PART_BYTES] for i in range(0, len(data), WIRE_PART_BYTES)] or [b""]
    return [bytes([(1 if i == 0 else 0) | (2 if i == len(cuts) - 1 else 0)]) + c
            for i, c in enumerate(cuts)]


def max_size_frames(frm, to):
    """Two frames of WIRE_MAX_FRAME bytes each, in pieces, that cost the
    receiver all their bytes and achieve nothing: a PAXOS frame with
    trailing garbage (malformed), and a CATCHUP of slots the receiver
    has (ignored)."""
    fixed = 12 + 117
    junk = paxos(ACCEPTED, frm, to)[:fixed]
    body_len = WIRE_MAX_FRAME - 12
    junk = struct.pack("<IBBHI", WIRE_MAGIC, WIRE_VERSION, WIRE_PAXOS, 0, body_len) + \
        junk[12:] + bytes(WIRE_MAX_FRAME - fixed)
    n = 1024
    per = (WIRE_MAX_FRAME - fixed - n * 33) // n
    data = bytes(per)
    ents = [(1 + i, (1, frm), 0, 0, data) for i in range(n)]
    catchup = paxos(CATCHUP, frm, to, slot=1, commit=1, entries=ents)
    assert len(junk) == WIRE_MAX_FRAME and len(catchup) <= WIRE_MAX_FRAME
    return junk, catchup


def kv_op(optype, key, arg=b""):
    """A kv op as chain/kv.h encodes it, without checking the key."""
    key = key.encode() if isinstance(key, str) else key
    op = struct.pack("<BH", optype, len(key)) + key
    if optype in (KV_PUT, KV_APPEND):
        op += struct.pack("<I", len(arg)) + arg
    elif optype == KV_RENAME:
        arg = arg.encode() if isinstance(arg, str) else arg
        op += struct.pack("<H", len(arg)) + arg
    return op


# ----------------------------------------------------------------- clients

class Peer:
    """A ZeroMQ DEALER connected to one node's ROUTER, as a member would
    be: with the cluster keypair (key=(public, secret)), or with what a
    test wants to try (server_key, client_keys, or no CURVE at all)."""

    def __init__(self, port, key=None, server_key=None, client_keys=None,
                 sndhwm=100000):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        if key or server_key or client_keys:
            pub, sec = client_keys or key
            self.sock.curve_publickey = pub
            self.sock.curve_secretkey = sec
            self.sock.curve_serverkey = server_key or key[0]
        self.sock.connect("tcp://127.0.0.1:%d" % port)

    def send(self, data, timeout=5.0):
        """Queue one frame, in both forms (both_forms); waits up to timeout for the
        connection (a DEALER with IMMEDIATE queues only on a finished
        handshake)."""
        deadline = time.monotonic() + timeout
        for piece in both_forms(data):
            while True:
                try:
                    self.sock.send(piece, zmq.DONTWAIT)
                    break
                except zmq.Again:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.005)
        return True

    def close(self):
        self.sock.close(0)
        self.ctx.term()


def random_keys():
    pub, sec = zmq.curve_keypair()
    return pub, sec


class Flood:
    """Sends frames from make() (a callable returning bytes or None to
    stop) through a Peer on a thread, as fast as the socket takes them or
    at `rate` per second, until stop() or `seconds` passed."""

    def __init__(self, peer, make, seconds=60.0, rate=None):
        self.peer, self.make, self.seconds, self.rate = peer, make, seconds, rate
        self.sent = 0
        self.stopping = threading.Event()
        self.on = threading.Event()       # cleared: paused
        self.on.set()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def pause(self, paused):
        if paused:
            self.on.clear()
        else:
            self.on.set()

    def run(self):
        deadline = time.monotonic() + self.seconds
        next_at = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if not self.on.is_set():
                self.on.wait(0.05)
                next_at = time.monotonic()
                continue
            data = self.make(self.sent)
            if data is None:
                return
            if self.rate:
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stopping.wait(delay)
                next_at += 1.0 / self.rate
            # a frame (bytes), its pieces cut once by the caller (a list),
            # or a frame as one message (a tuple of one: what nodes sent
            # before frames went in pieces)
            msgs = data if isinstance(data, (list, tuple)) else both_forms(data)
            for piece in msgs:
                while not self.stopping.is_set():
                    try:
                        self.peer.sock.send(piece, zmq.DONTWAIT, copy=False)
                        break
                    except zmq.Again:
                        self.stopping.wait(0.001)
            self.sent += 1

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "flood thread did not stop"


# ZMTP 3.0 greeting of a CURVE client (RFC 23 / 26): signature, version
# 3.0, mechanism "CURVE" padded to 20 bytes, as-server 0, 31 bytes filler.
CURVE_GREETING = (b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" +
                  b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31)


class UnfinishedHandshake:
    """Raw TCP connections that greet as CURVE clients, then declare one
    handshake command frame of `declared` bytes (ZMTP long frame, command
    flag) and stream zeros into it for as long as the node keeps the
    connection; a closed connection is opened again.  Pre-authentication:
    no key is involved.  Runs on a thread until stop()."""

    def __init__(self, port, declared=8 << 30, connections=3, seconds=60.0):
        self.port, self.declared = port, declared
        self.connections, self.seconds = connections, seconds
        self.stopping = threading.Event()
        self.opened = 0
        self.bytes = 0
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self):
        zeros = b"\0" * (256 << 10)
        deadline = time.monotonic() + self.seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                self.stopping.wait(0.05)
                continue
            self.opened += 1
            try:
                s.settimeout(1.0)
                s.sendall(CURVE_GREETING)
                s.sendall(b"\x06" + struct.pack(">Q", self.declared))
                while not self.stopping.is_set() and time.monotonic() < deadline:
                    try:
                        s.sendall(zeros)
                        self.bytes += len(zeros)
                    except socket.timeout:
                        continue
            except OSError:
                pass   # the node closed it: open another
            finally:
                s.close()
            self.stopping.wait(0.01)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "handshake thread did not stop"


# ------------------------------------------------------------ measurements

def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def asan_slack(pid):
    """Bytes an AddressSanitizer build keeps resident on top of what the
    code holds: freed blocks wait in ASan's quarantine (256 MiB by
    default) before they are reused.  0 for a normal build."""
    with open("/proc/%d/maps" % pid) as f:
        return (256 << 20) + (64 << 20) if "libasan" in f.read() else 0


class RssPeak:
    """Samples a process's RSS every 50 ms on a thread; .peak is the
    highest seen."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping.wait(0.05):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        return self.peak


def timed_writes(path_of, count, deadline_s=120.0, size=64):
    """Write `count` small files (path_of(i)) one after another; their
    latencies in seconds.  Stops at the deadline."""
    lat = []
    data = os.urandom(size)
    end = time.monotonic() + deadline_s
    for i in range(count):
        if time.monotonic() > end:
            break
        t0 = time.monotonic()
        with open(path_of(i), "wb") as f:
            f.write(data)
        lat.append(time.monotonic() - t0)
    return lat


def p50(values):
    return statistics.median(values)

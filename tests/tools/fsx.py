#!/usr/bin/python3
"""fsx.py - random file operations on paxosfs mounts, compared with a local
directory.

Every operation runs twice, on a mount and on the same-named file of a
local directory, and every return value, errno, size and byte read must
agree: open (O_RDWR/O_WRONLY with O_CREAT, O_TRUNC, O_APPEND, O_EXCL),
close, read, pread, write, pwrite, lseek, ftruncate, truncate, unlink,
rename, fstat and stat, with several descriptors open at once; and a
small tree: mkdir, rmdir, renames of directories (a whole tree at once,
also into another directory) and of files between directories, each
errno (EEXIST, ENOENT, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL) compared.  With
several mounts (one per node of a cluster) the operations are spread over
them, and after every close each mount's view (listing, sizes, contents)
is compared with the local directory.

What paxosfs promises is narrower than one local file, and the exerciser
keeps to it (README, "The filesystem"):
  - an open with O_TRUNC starts a new version of a file: descriptors that
    opened it before keep theirs (last close wins), so O_TRUNC is used
    only on a file no descriptor has open;
  - a file is open for writing on one mount at a time (concurrent writers
    on two mounts: the last commit wins, by design);
  - a file created on a mount and not yet committed exists only there;
  - descriptors are opened for writing: a read-only descriptor reads the
    committed value, not this mount's uncommitted writes;
  - a creation or truncation that was never written commits when the file
    is released, just after close() returns: until then other mounts may
    show the old state (polled with a deadline, never a fixed sleep);
  - a directory is removed or renamed only while no file below it is open
    for writing or waiting for its first commit (a file created on one
    mount and not committed yet is not in the replicated tree, so rmdir
    elsewhere does not see it).

Usage:  fsx.py [--seed N] [--ops N] [--files N] LOCALDIR MOUNT [MOUNT...]
Exit 0 when every operation agreed; otherwise the seed, the operation
number and the difference are printed, with the last operations.
"""
import argparse
import collections
import errno
import os
import random
import sys
import time

NAMES_MAX_SIZE = 1 << 16
SETTLE_S = 20.0


class Mismatch(AssertionError):
    pass


def attempt(fn):
    """(value, 0) or (None, errno)."""
    try:
        return fn(), 0
    except OSError as e:
        return None, e.errno


class File:
    """One file of the local directory (by inode) while descriptors or a
    recent change make it interesting."""

    def __init__(self, ino):
        self.ino = ino
        self.writers = collections.Counter()   # mount index -> writable fds
        self.wrote = False      # this process wrote since the last commit
        self.trunc = False      # truncated or created since the last commit
        self.pending = False    # created here, never committed

    def writer_mount(self):
        live = [m for m, n in self.writers.items() if n > 0]
        assert len(live) <= 1
        return live[0] if live else None


class Fd:
    def __init__(self, mount, pfd, lfd, flags, f):
        self.mount, self.pfd, self.lfd, self.flags, self.file = mount, pfd, lfd, flags, f
        self.wrote = False


class Fsx:
    def __init__(self, local, mounts, seed, ops, files=6, prefix="fsx", log=None):
        self.local = local
        self.mounts = list(mounts)
        self.rng = random.Random(seed)
        self.seed = seed
        self.ops = ops
        # directories (parents first) and file names at every depth
        self.dirs = ["%sd0" % prefix, "%sd1" % prefix,
                     "%sd0/%sd2" % (prefix, prefix)]
        self.names = ["%s%d" % (prefix, i) for i in range(files)] + [
            "%s/%s%d" % (d, prefix, files + i) for i, d in enumerate(self.dirs)]
        self.prefix = prefix
        self.fds = []
        self.files = {}          # local ino -> File
        self.history = collections.deque(maxlen=40)
        self.log = log
        self.step_no = 0

    # --------------------------------------------------------- helpers

    def lpath(self, name):
        return os.path.join(self.local, name)

    def mpath(self, m, name):
        return os.path.join(self.mounts[m], name)

    def file_at(self, name):
        try:
            ino = os.stat(self.lpath(name)).st_ino
        except FileNotFoundError:
            return None
        f = self.files.get(ino)
        if f is None:
            f = self.files[ino] = File(ino)
        return f

    def forget_unused(self):
        used = {fd.file.ino for fd in self.fds}
        for ino in list(self.files):
            f = self.files[ino]
            if ino not in used and not f.trunc and not f.wrote:
                del self.files[ino]

    def note(self, text):
        self.history.append("%d: %s" % (self.step_no, text))
        if self.log:
            self.log.write(self.history[-1] + "\n")

    def fail(self, text):
        raise Mismatch("seed %d op %d: %s\nlast operations:\n  %s" % (
            self.seed, self.step_no, text, "\n  ".join(self.history)))

    def same(self, what, got, want):
        if got != want:
            self.fail("%s: mount %r, local %r" % (what, got, want))

    def pick_mount(self, *files):
        """The mount a path operation on these files must use: the one
        where one is open for writing, else any."""
        ms = {f.writer_mount() for f in files if f is not None} - {None}
        if len(ms) > 1:
            return None
        if ms:
            return ms.pop()
        return self.rng.randrange(len(self.mounts))

    def data(self, n):
        c = self.rng.randrange(256)
        return bytes((c + i) % 256 for i in range(n))

    # --------------------------------------------------------- operations

    def op_open(self):
        name = self.rng.choice(self.names)
        flags = self.rng.choice([os.O_RDWR, os.O_RDWR, os.O_WRONLY])
        if self.rng.random() < 0.6:
            flags |= os.O_CREAT
            if self.rng.random() < 0.15:
                flags |= os.O_EXCL
        if self.rng.random() < 0.25:
            flags |= os.O_TRUNC
        if self.rng.random() < 0.2:
            flags |= os.O_APPEND
        before = self.file_at(name)
        m = self.pick_mount(before)
        if m is None:
            return
        if before is not None and before.writer_mount() is not None:
            # O_TRUNC starts a new version of a file open for writing on
            # a mount (README): other descriptors keep the old one, which
            # a local file cannot show
            flags &= ~os.O_TRUNC
        lfd, lerr = attempt(lambda: os.open(self.lpath(name), flags, 0o644))
        pfd, perr = attempt(lambda: os.open(self.mpath(m, name), flags, 0o644))
        self.note("open %s %s on %d -> %s/%s" % (name, oct(flags), m, lerr, perr))
        if lfd is not None and pfd is None:
            os.close(lfd)
        if pfd is not None and lfd is None:
            os.close(pfd)
        self.same("open %s errno" % name, perr, lerr)
        if lfd is None:
            return
        f = self.file_at(name)
        if before is None:
            # a new file: O_EXCL commits at open, anything else when written
            # and flushed or released
            f.pending = not (flags & os.O_EXCL)
            f.trunc = f.trunc or not (flags & os.O_EXCL)
        if flags & os.O_TRUNC:
            f.trunc = True
        f.writers[m] += 1
        self.fds.append(Fd(m, pfd, lfd, flags, f))

    def op_close(self, fd=None):
        if fd is None:
            if not self.fds:
                return
            fd = self.rng.choice(self.fds)
        self.fds.remove(fd)
        f = fd.file
        f.writers[fd.mount] -= 1
        last = f.writers[fd.mount] == 0
        _, perr = attempt(lambda: os.close(fd.pfd))
        _, lerr = attempt(lambda: os.close(fd.lfd))
        self.note("close fd on %d (last %s, wrote %s, trunc %s)" % (
            fd.mount, last, f.wrote, f.trunc))
        self.same("close errno", perr, lerr)
        settling = []
        if f.wrote:
            # committed by this flush: every mount sees it at once
            f.wrote = f.trunc = f.pending = False
        elif f.trunc and last:
            # committed at release, just after close() returned
            f.trunc = f.pending = False
            settling.append(f.ino)
        self.check_views(settling, fd.mount)
        self.forget_unused()

    def pick_fd(self):
        return self.rng.choice(self.fds) if self.fds else None

    def op_write(self, positional):
        fd = self.pick_fd()
        if fd is None:
            return
        n = self.rng.choice([1, 7, 100, 1000, 4096, self.rng.randrange(1, 9000)])
        buf = self.data(n)
        if positional:
            off = self.rng.randrange(NAMES_MAX_SIZE)
            pr, perr = attempt(lambda: os.pwrite(fd.pfd, buf, off))
            lr, lerr = attempt(lambda: os.pwrite(fd.lfd, buf, off))
            what = "pwrite %d at %d" % (n, off)
        else:
            pr, perr = attempt(lambda: os.write(fd.pfd, buf))
            lr, lerr = attempt(lambda: os.write(fd.lfd, buf))
            what = "write %d" % n
        self.note(what + " on %d -> %s/%s" % (fd.mount, lr, pr))
        self.same(what, (pr, perr), (lr, lerr))
        if lr:
            fd.wrote = True
            fd.file.wrote = True

    def op_read(self, positional):
        fd = self.pick_fd()
        if fd is None:
            return
        n = self.rng.choice([1, 100, 4096, 70000])
        if positional:
            off = self.rng.randrange(NAMES_MAX_SIZE + 8192)
            pr, perr = attempt(lambda: os.pread(fd.pfd, n, off))
            lr, lerr = attempt(lambda: os.pread(fd.lfd, n, off))
            what = "pread %d at %d" % (n, off)
        else:
            pr, perr = attempt(lambda: os.read(fd.pfd, n))
            lr, lerr = attempt(lambda: os.read(fd.lfd, n))
            what = "read %d" % n
        self.note(what + " on %d -> %s/%s" % (fd.mount, len(lr) if lr is not None else lerr,
                                               len(pr) if pr is not None else perr))
        self.same(what, (pr, perr), (lr, lerr))

    def op_lseek(self):
        fd = self.pick_fd()
        if fd is None:
            return
        whence = self.rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
        off = self.rng.randrange(-100, 70000) if whence != os.SEEK_SET else \
            self.rng.randrange(70000)
        pr, perr = attempt(lambda: os.lseek(fd.pfd, off, whence))
        lr, lerr = attempt(lambda: os.lseek(fd.lfd, off, whence))
        self.note("lseek %d %d on %d -> %s/%s" % (off, whence, fd.mount, lr, pr))
        self.same("lseek %d whence %d" % (off, whence), (pr, perr), (lr, lerr))

    def op_ftruncate(self):
        fd = self.pick_fd()
        if fd is None:
            return
        n = self.rng.randrange(70000)
        pr, perr = attempt(lambda: os.ftruncate(fd.pfd, n))
        lr, lerr = attempt(lambda: os.ftruncate(fd.lfd, n))
        self.note("ftruncate %d on %d -> %s/%s" % (n, fd.mount, lerr, perr))
        self.same("ftruncate %d" % n, perr, lerr)
        if not lerr:
            # credited to the file table that wrote through this fd
            if fd.wrote:
                fd.file.wrote = True
            else:
                fd.file.trunc = True

    def op_truncate(self):
        name = self.rng.choice(self.names)
        f = self.file_at(name)
        m = self.pick_mount(f)
        n = self.rng.randrange(70000)
        _, perr = attempt(lambda: os.truncate(self.mpath(m, name), n))
        _, lerr = attempt(lambda: os.truncate(self.lpath(name), n))
        self.note("truncate %s %d on %d -> %s/%s" % (name, n, m, lerr, perr))
        self.same("truncate %s %d" % (name, n), perr, lerr)
        if not lerr and f.writer_mount() is not None:
            f.trunc = True          # the working copy, committed with it

    def stat_tuple(self, st):
        import stat as st_mod
        if st_mod.S_ISDIR(st.st_mode):
            return ("dir",)      # sizes and link counts of directories differ
        return (st.st_size, st.st_nlink)

    def op_fstat(self):
        fd = self.pick_fd()
        if fd is None:
            return
        pr, perr = attempt(lambda: self.stat_tuple(os.fstat(fd.pfd)))
        lr, lerr = attempt(lambda: self.stat_tuple(os.fstat(fd.lfd)))
        self.note("fstat on %d -> %s/%s" % (fd.mount, lr, pr))
        self.same("fstat (size, nlink)", (pr, perr), (lr, lerr))

    def op_stat(self):
        name = self.rng.choice(self.names)
        f = self.file_at(name)
        if f is not None and f.pending and f.writer_mount() is None:
            return
        m = self.pick_mount(f)
        pr, perr = attempt(lambda: self.stat_tuple(os.stat(self.mpath(m, name))))
        lr, lerr = attempt(lambda: self.stat_tuple(os.stat(self.lpath(name))))
        self.note("stat %s on %d -> %s/%s" % (name, m, lr, pr))
        self.same("stat %s (size, nlink)" % name, (pr, perr), (lr, lerr))

    def route_names(self, *names):
        """The mount for a path operation on names: where a file that is
        not committed yet lives, else any."""
        ms = set()
        for name in names:
            f = self.file_at(name)
            if f is not None and f.pending:
                ms.add(f.writer_mount())
        ms.discard(None)
        if len(ms) > 1:
            return None
        return ms.pop() if ms else self.rng.randrange(len(self.mounts))

    def op_unlink(self):
        name = self.rng.choice(self.names)
        m = self.route_names(name)
        if m is None:
            return
        _, perr = attempt(lambda: os.unlink(self.mpath(m, name)))
        _, lerr = attempt(lambda: os.unlink(self.lpath(name)))
        self.note("unlink %s on %d -> %s/%s" % (name, m, lerr, perr))
        self.same("unlink %s" % name, perr, lerr)

    def op_rename(self):
        a, b = self.rng.choice(self.names), self.rng.choice(self.names)
        m = self.route_names(a, b)
        if m is None:
            return
        _, perr = attempt(lambda: os.rename(self.mpath(m, a), self.mpath(m, b)))
        _, lerr = attempt(lambda: os.rename(self.lpath(a), self.lpath(b)))
        self.note("rename %s %s on %d -> %s/%s" % (a, b, m, lerr, perr))
        self.same("rename %s %s" % (a, b), perr, lerr)

    def busy_below(self, d):
        """Is a file below directory d open for writing, or waiting for a
        commit (created or truncated and not committed yet)?"""
        top = self.lpath(d)
        if not os.path.isdir(top):
            return False
        for dirpath, _, files in os.walk(top):
            for n in files:
                f = self.files.get(os.stat(os.path.join(dirpath, n)).st_ino)
                if f is not None and (f.writer_mount() is not None or
                                      f.pending or f.trunc or f.wrote):
                    return True
        return False

    def op_mkdir(self):
        d = self.rng.choice(self.dirs + self.names[:1])
        m = self.route_names(d)      # a file not committed yet: its mount
        if m is None:
            return
        _, perr = attempt(lambda: os.mkdir(self.mpath(m, d)))
        _, lerr = attempt(lambda: os.mkdir(self.lpath(d)))
        self.note("mkdir %s on %d -> %s/%s" % (d, m, lerr, perr))
        self.same("mkdir %s" % d, perr, lerr)

    def op_rmdir(self):
        d = self.rng.choice(self.dirs + self.names[:1])
        if self.busy_below(d):
            return
        m = self.route_names(d)
        if m is None:
            return
        _, perr = attempt(lambda: os.rmdir(self.mpath(m, d)))
        _, lerr = attempt(lambda: os.rmdir(self.lpath(d)))
        self.note("rmdir %s on %d -> %s/%s" % (d, m, lerr, perr))
        self.same("rmdir %s" % d, perr, lerr)

    def op_rename_dir(self):
        """A directory onto another directory name (a whole tree; into
        itself: EINVAL), or onto a file name (ENOTDIR)."""
        a = self.rng.choice(self.dirs)
        b = self.rng.choice(self.dirs + self.names)
        if self.busy_below(a) or self.busy_below(b):
            return
        fb = self.file_at(b) if not os.path.isdir(self.lpath(b)) else None
        if fb is not None and (fb.writer_mount() is not None or fb.pending):
            return
        m = self.route_names(b)
        if m is None:
            return
        _, perr = attempt(lambda: os.rename(self.mpath(m, a), self.mpath(m, b)))
        _, lerr = attempt(lambda: os.rename(self.lpath(a), self.lpath(b)))
        self.note("rename dir %s %s on %d -> %s/%s" % (a, b, m, lerr, perr))
        self.same("rename %s %s" % (a, b), perr, lerr)

    def op_append(self):
        """`echo data >> name`: open O_APPEND, write, close on one mount."""
        name = self.rng.choice(self.names)
        f = self.file_at(name)
        if f is not None and (f.writer_mount() is not None or f.pending):
            return
        m = self.rng.randrange(len(self.mounts))
        buf = self.data(self.rng.randrange(1, 300))

        def app(path):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                return os.write(fd, buf)
            finally:
                os.close(fd)
        pr, perr = attempt(lambda: app(self.mpath(m, name)))
        lr, lerr = attempt(lambda: app(self.lpath(name)))
        self.note(">> %s %d on %d -> %s/%s" % (name, len(buf), m, lr, pr))
        self.same(">> %s" % name, (pr, perr), (lr, lerr))
        if lr:
            self.check_views((), m)

    # --------------------------------------------------------- views

    def tree(self, root):
        """Every path below root that starts with the prefix, directories
        with a '/' at the end, sorted."""
        out = []

        def walk(rel):
            for n in os.listdir(os.path.join(root, rel)):
                if not rel and not n.startswith(self.prefix):
                    continue
                path = os.path.join(rel, n)
                if os.path.isdir(os.path.join(root, path)):
                    out.append(path + "/")
                    walk(path)
                else:
                    out.append(path)
        walk("")
        return sorted(out)

    def local_view(self):
        return self.tree(self.local)

    def mount_view(self, m):
        return self.tree(self.mounts[m])

    def read_mount(self, m, name):
        fd = os.open(self.mpath(m, name), os.O_RDONLY)
        try:
            chunks = []
            while True:
                b = os.read(fd, 1 << 17)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        finally:
            os.close(fd)

    def check_views(self, settling=(), closed_on=0):
        """Each mount's listing, and the content of every file that is not
        open for writing anywhere, equal the local directory.  Files whose
        commit is on its way (`settling`) may lag on other mounts: polled."""
        names = self.local_view()
        busy = {}      # name -> mount where it is open for writing
        local = {}
        for name in names:
            if name.endswith("/"):
                continue
            f = self.file_at(name)
            w = f.writer_mount()
            if w is not None:
                busy[name] = (w, f)
            else:
                with open(self.lpath(name), "rb") as fh:
                    local[name] = (fh.read(), f)
        for m in range(len(self.mounts)):
            def view_ok(m=m, final=False):
                want = [n for n in names
                        if n not in busy or busy[n][0] == m or not busy[n][1].pending]
                got = self.mount_view(m)
                if got != want:
                    if final:
                        self.fail("listing of mount %d: %s, local %s" % (m, got, want))
                    return False
                for name, (content, f) in local.items():
                    data, err = attempt(lambda: self.read_mount(m, name))
                    if data != content:
                        if final:
                            self.fail("content of %s on mount %d: %s, local %d bytes" % (
                                name, m, "errno %s" % err if err else "%d bytes" % len(data),
                                len(content)))
                        return False
                for name, (w, f) in busy.items():
                    if w == m:
                        st, err = attempt(lambda: os.stat(self.mpath(m, name)).st_size)
                        if st != os.stat(self.lpath(name)).st_size:
                            if final:
                                self.fail("size of %s (open for writing) on mount %d: %s, "
                                          "local %d" % (name, m, st if st is not None else err,
                                                        os.stat(self.lpath(name)).st_size))
                            return False
                return True

            if settling and m != closed_on:
                deadline = time.monotonic() + SETTLE_S
                while not view_ok() and time.monotonic() < deadline:
                    time.sleep(0.005)
            view_ok(final=True)

    # --------------------------------------------------------- driver

    def step(self):
        ops = [(self.op_open, 15), (self.op_close, 11), (lambda: self.op_write(False), 12),
               (lambda: self.op_write(True), 10), (lambda: self.op_read(False), 7),
               (lambda: self.op_read(True), 7), (self.op_lseek, 6), (self.op_ftruncate, 5),
               (self.op_truncate, 4), (self.op_fstat, 5), (self.op_stat, 4),
               (self.op_unlink, 4), (self.op_rename, 4), (self.op_mkdir, 3),
               (self.op_rmdir, 2), (self.op_rename_dir, 2), (self.op_append, 3)]
        if len(self.fds) >= 6:
            op = self.op_close
        else:
            op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        op()

    def run(self):
        import shutil
        for root in [self.local] + self.mounts:
            for n in os.listdir(root):
                if n.startswith(self.prefix):
                    path = os.path.join(root, n)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
        self.check_views(settling=[True], closed_on=None)
        for i in range(self.ops):
            self.step_no = i + 1
            self.step()
        while self.fds:
            self.op_close(self.fds[0])
        return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("local")
    ap.add_argument("mounts", nargs="+")
    args = ap.parse_args(argv)
    fsx = Fsx(args.local, args.mounts, args.seed, args.ops, args.files,
              log=sys.stdout if args.verbose else None)
    try:
        fsx.run()
    except Mismatch as e:
        print("fsx: MISMATCH: %s" % e, file=sys.stderr)
        return 1
    print("fsx: seed %d, %d operations on %d mount(s): all agreed" % (
        args.seed, args.ops, len(args.mounts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

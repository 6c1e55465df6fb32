#!/usr/bin/python3
"""The conformance table runner: one expectation per line of table.txt.

    conform.py MOUNT [TABLE]      run against a mounted paxosfs

A line is `op args... expected`, whitespace-separated columns (shell
quoting for data with spaces); `#` starts a comment.  `== name` starts a
case: a fresh directory under MOUNT that every path of the case is
relative to (so cases do not see each other).  Expected is `0` (the call
succeeds), an errno name (the call fails with exactly it), or `=VALUE`
(the call returns VALUE; `=` alone: empty; a NUL byte shows as \\0).
`{c*N}` in an argument stands for N times the character c.  Operations
are the branches of Case.run; each is one system call (or the few a shell
command such as `>`, `>>` or `cat` makes).
"""
import ctypes
import errno
import os
import re
import shlex
import socket
import stat
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
RENAME_FLAGS = {"0": 0, "NOREPLACE": 1, "EXCHANGE": 2, "WHITEOUT": 4,
                "NOREPLACE|EXCHANGE": 3}
OPEN_FLAGS = {name: getattr(os, name) for name in (
    "O_RDONLY", "O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_TRUNC",
    "O_APPEND", "O_DIRECTORY", "O_NOFOLLOW")}


def flags_of(text):
    v = 0
    for part in text.split("|"):
        v |= OPEN_FLAGS[part]
    return v


def renameat2(a, b, flags):
    rc = LIBC.renameat2(-100, a.encode(), -100, b.encode(),
                        RENAME_FLAGS[flags])
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def kind(st):
    for name, test in (("dir", stat.S_ISDIR), ("file", stat.S_ISREG),
                       ("link", stat.S_ISLNK), ("fifo", stat.S_ISFIFO),
                       ("sock", stat.S_ISSOCK), ("chr", stat.S_ISCHR)):
        if test(st.st_mode):
            return name
    return "?"


def stat_field(path, field):
    st = os.lstat(path)
    return {"type": kind(st), "size": str(st.st_size),
            "mode": "%04o" % stat.S_IMODE(st.st_mode),
            "nlink": str(st.st_nlink), "uid": str(st.st_uid),
            "gid": str(st.st_gid), "mtime": str(int(st.st_mtime)),
            "blocks>=size/512": "yes" if st.st_blocks * 512 >= st.st_size else "no",
            }[field]


def bind_socket(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(path)
    finally:
        s.close()


class Case:
    def __init__(self, root):
        self.root = root
        self.fds = {}

    def p(self, rel):
        return os.path.join(self.root, rel)

    def close_all(self):
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()

    def run(self, op, a):
        p = self.p
        if op == "open":            # open NAME PATH FLAGS [MODE]
            mode = int(a[3], 8) if len(a) > 3 else 0o644
            self.fds[a[0]] = os.open(p(a[1]), flags_of(a[2]), mode)
            return None
        if op == "close":
            fd = self.fds.pop(a[0])
            os.close(fd)
            return None
        if op == "pwrite":          # pwrite NAME DATA OFFSET -> bytes
            return str(os.pwrite(self.fds[a[0]], a[1].encode(), int(a[2])))
        if op == "write":           # write NAME DATA -> bytes
            return str(os.write(self.fds[a[0]], a[1].encode()))
        if op == "pread":           # pread NAME LEN OFFSET -> data
            return os.pread(self.fds[a[0]], int(a[1]), int(a[2])).decode()
        if op == "read":            # read NAME LEN -> data
            return os.read(self.fds[a[0]], int(a[1])).decode()
        if op == "lseek":           # lseek NAME OFF WHENCE -> offset
            return str(os.lseek(self.fds[a[0]], int(a[1]),
                                {"SET": 0, "CUR": 1, "END": 2}[a[2]]))
        if op == "ftruncate":
            os.ftruncate(self.fds[a[0]], int(a[1]))
            return None
        if op == "fsync":
            os.fsync(self.fds[a[0]])
            return None
        if op == "fstat":           # fstat NAME FIELD -> value
            st = os.fstat(self.fds[a[0]])
            return {"size": str(st.st_size), "nlink": str(st.st_nlink),
                    "type": kind(st)}[a[1]]
        if op == "put":             # put PATH DATA: > path
            with open(p(a[0]), "w") as f:
                f.write(a[1])
            return None
        if op == "append":          # append PATH DATA: >> path
            with open(p(a[0]), "a") as f:
                f.write(a[1])
            return None
        if op == "cat":             # cat PATH -> content
            with open(p(a[0])) as f:
                return f.read()
        if op == "truncate":
            os.truncate(p(a[0]), int(a[1]))
            return None
        if op == "unlink":
            os.unlink(p(a[0]))
            return None
        if op == "mkdir":
            os.mkdir(p(a[0]), int(a[1], 8) if len(a) > 1 else 0o755)
            return None
        if op == "rmdir":
            os.rmdir(p(a[0]))
            return None
        if op == "rename":
            os.rename(p(a[0]), p(a[1]))
            return None
        if op == "renameat2":       # renameat2 A B FLAGS
            renameat2(p(a[0]), p(a[1]), a[2])
            return None
        if op == "link":
            os.link(p(a[0]), p(a[1]))
            return None
        if op == "symlink":         # symlink TARGET PATH
            os.symlink(a[0], p(a[1]))
            return None
        if op == "readlink":
            return os.readlink(p(a[0]))
        if op == "mkfifo":
            os.mkfifo(p(a[0]))
            return None
        if op == "mknod":           # mknod PATH chr|blk|file
            t = {"chr": stat.S_IFCHR, "blk": stat.S_IFBLK,
                 "file": stat.S_IFREG}[a[1]]
            os.mknod(p(a[0]), t | 0o644, os.makedev(1, 3))
            return None
        if op == "bind":            # a unix socket at PATH
            bind_socket(p(a[0]))
            return None
        if op == "stat":            # stat PATH FIELD -> value
            return stat_field(p(a[0]), a[1])
        if op == "exists":
            return "yes" if os.path.lexists(p(a[0])) else "no"
        if op == "ls":              # ls DIR -> a,b,c (sorted)
            return ",".join(sorted(os.listdir(p(a[0]))))
        if op == "chmod":
            os.chmod(p(a[0]), int(a[1], 8))
            return None
        if op == "chown":
            os.chown(p(a[0]), int(a[1]), int(a[2]))
            return None
        if op == "utime":           # utime PATH MTIME (seconds)
            os.utime(p(a[0]), (int(a[1]), int(a[1])))
            return None
        if op == "getxattr":
            return os.getxattr(p(a[0]), a[1]).decode()
        if op == "setxattr":
            os.setxattr(p(a[0]), a[1], a[2].encode())
            return None
        if op == "removexattr":
            os.removexattr(p(a[0]), a[1])
            return None
        if op == "fsyncdir":
            fd = os.open(p(a[0]), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return None
        if op == "opendir":         # open(O_DIRECTORY) of PATH
            os.close(os.open(p(a[0]), os.O_RDONLY | os.O_DIRECTORY))
            return None
        raise ValueError("unknown operation %r" % op)


def parse(table):
    """[(line number, case name or None, op, args, expected)]"""
    rows = []
    with open(table) as f:
        for no, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("=="):
                rows.append((no, s[2:].strip(), None, None, None))
                continue
            t = [re.sub(r"\{(.)\*(\d+)\}", lambda m: m.group(1) * int(m.group(2)), x)
                 for x in shlex.split(s, comments=True)]
            if len(t) < 2:
                raise ValueError("line %d: want `op args... expected`" % no)
            rows.append((no, None, t[0], t[1:-1], t[-1]))
    return rows


def count(table):
    return sum(1 for r in parse(table) if r[2])


def run(mount, table, out=sys.stdout):
    """Run every expectation; returns the list of failures."""
    failures = []
    case = None
    n = 0
    seq = 0
    for no, name, op, args, expected in parse(table):
        if name is not None:
            if case:
                case.close_all()
            seq += 1
            root = os.path.join(mount, "conf%03d" % seq)
            os.mkdir(root)
            case = Case(root)
            continue
        n += 1
        try:
            value = case.run(op, args)
            got = "0" if value is None else "=" + value.replace("\0", "\\0")
        except OSError as e:
            got = errno.errorcode.get(e.errno, str(e.errno))
        want = expected
        if want.startswith("=") or want == "0":
            ok = got == want or (want == "0" and got.startswith("="))
        else:
            ok = got == want
        line = "%s %d  line %d: %s %s -> %s" % (
            "ok" if ok else "not ok", n, no, op, " ".join(args), want)
        if not ok:
            line += "  (got %s)" % got
            failures.append(line)
        print(line, file=out)
    if case:
        case.close_all()
    print("%d expectations, %d failed" % (n, len(failures)), file=out)
    return failures


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    table = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "table.txt")
    sys.exit(1 if run(sys.argv[1], table) else 0)

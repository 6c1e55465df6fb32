"""The random-operation exerciser (tests/tools/fsx.py) on a real mount and
on a 3-node cluster: every return value, errno, size and content must
agree with a local directory (the model), files and a small tree of
directories (mkdir, rmdir, renames of whole trees); with several mounts
each one's whole tree converges to the model after every close.  `make
test` runs a bounded number of seeded operations; `make fsx N=100000
SEED=7` runs as many as asked."""
import io
import os
import sys

import pytest

from conftest import wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import fsx  # noqa: E402

OPS = int(os.environ.get("FSX_OPS", "1200"))
SEED = int(os.environ.get("FSX_SEED", "1"))


def run(local, mounts, seed, ops, tmp_path):
    log = open(tmp_path / ("fsx-%d.log" % seed), "w")
    try:
        ex = fsx.Fsx(str(local), mounts, seed, ops, log=log)
        ex.run()
    except fsx.Mismatch as e:
        pytest.fail(str(e))
    finally:
        log.close()


def test_fsx_single_mount(node, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    run(local, [node.mnt], SEED, OPS, tmp_path)


def test_fsx_across_mounts(launched, tmp_path):
    c = launched(3)
    c.wait_leader()
    local = tmp_path / "local"
    local.mkdir()
    run(local, [c.node(k).mnt for k in (1, 2, 3)], SEED + 1000, max(OPS * 2 // 3, 1), tmp_path)

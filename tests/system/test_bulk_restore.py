"""A new cluster started from one backup (build/bench/bulkgen, then
`tools/cluster up --restore`, i.e. `paxosctl restore --new-cluster` into
every node): it elects a leader, serves the restored keys on every mount
and takes writes; a learner added to it fetches the leader's snapshot
once, not again while the received one waits to be installed.  Real
processes through tools/cluster (conftest.launched); every wait is a
polled condition with a deadline."""
import os
import subprocess
import time

from conftest import BUILD, PAXOSCTL, read_file, wait_for, write_file

BULKGEN = os.path.join(BUILD, "bench", "bulkgen")


def bulk_backup(tmp_path, keys):
    path = str(tmp_path / ("bulk-%d.pxb" % keys))
    r = subprocess.run([BULKGEN, str(keys), path], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "keys=%d " % keys in r.stdout, r.stdout
    return path


def test_restore_new_cluster_serves_the_backup(launched, tmp_path):
    backup = bulk_backup(tmp_path, 3000)
    c = launched(3, launcher_args=["--restore", backup])
    leader = c.wait_leader()
    heads = {(c.node(k).status_within()["chain_head"]["index"],
              c.node(k).status_within()["chain_head"]["hash"]) for k in (1, 2, 3)}
    assert len(heads) == 1, heads
    for k in (1, 2, 3):
        names = os.listdir(c.node(k).path("bulk"))
        assert len(names) == 3000
        value = read_file(c.node(k).path("bulk/k0002999"))
        assert len(value) == 100 and set(value) <= set("0123456789abcdef")
        st = c.node(k).status_within()
        assert st["membership"]["state"] == "voter", st["membership"]
    write_file(c.node(leader).path("bulk/after"), "written after the restore\n")
    other = 1 if leader != 1 else 2
    assert read_file(c.node(other).path("bulk/after")) == "written after the restore\n"


def test_restore_without_new_cluster_marks_recovering(tmp_path):
    """The option is what makes the store not recovering; without it the
    restored directory still recovers (the rule for one member)."""
    backup = bulk_backup(tmp_path, 10)
    plain, fresh = str(tmp_path / "plain"), str(tmp_path / "fresh")
    r = subprocess.run([PAXOSCTL, "restore", backup, plain], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "recovering" in r.stdout
    r = subprocess.run([PAXOSCTL, "restore", "--new-cluster", backup, fresh],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "new cluster" in r.stdout
    v_plain = subprocess.run([PAXOSCTL, "verify", plain], capture_output=True, text=True)
    v_fresh = subprocess.run([PAXOSCTL, "verify", fresh], capture_output=True, text=True)
    assert v_plain.returncode == 0 and v_fresh.returncode == 0
    assert "recover" in v_plain.stdout + v_plain.stderr
    assert "recover" not in v_fresh.stdout + v_fresh.stderr


def test_learner_fetches_the_snapshot_once(launched, tmp_path):
    """A learner joining a cluster of 300k keys fetches the leader's
    snapshot once while the received snapshot waits for its vouchers (here
    for as long as both followers are paused: a learner of three voters
    needs two of the others to hold its head hash).  The replica asks again
    every 100 ms until the install; each ask used to start a new transfer
    of the same snapshot (at 1M keys every time: 70 MB read and sent again
    by the leader, a second state of 1M keys built by the learner)."""
    backup = bulk_backup(tmp_path, 300000)
    c = launched(3, launcher_args=["--restore", backup])
    leader = c.wait_leader()
    f1, f2 = [k for k in (1, 2, 3) if k != leader]
    c.pause(f1)
    paused = [f1]
    try:
        c.ok("add", "--timeout", 120, timeout=240)
        c.pause(f2)        # while the transfer (about a second) runs
        paused.append(f2)
        c.nodes = [type(c.nodes[0])(c, rec["id"]) for rec in c.info()["nodes"]]
        n4 = c.node(4)

        def snap4():
            st = n4.status_within()
            return st["snapshot"] if st else None
        first = wait_for(lambda: (lambda s: s if s and s["receiving"]["completed"] >= 1
                                  else None)(snap4()), 120, "node 4 received the snapshot")
        assert first["installed"] == 0 and first["pending"] > 0, \
            "installed before the followers were paused: %s" % first
        # the replica asks again every 100 ms meanwhile: three seconds of it
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            s = snap4()
            assert not s["receiving"]["active"] and s["receiving"]["completed"] == 1, s
            time.sleep(0.05)
    finally:
        for k in paused:
            c.resume(k)
    wait_for(lambda: (snap4() or {}).get("installed", 0) >= 1, 60, "node 4 installed")
    lst = c.node(leader).status_within()
    wait_for(lambda: n4.status_within()["applied_index"] >= lst["commit_index"], 60,
             "node 4 level")
    assert snap4()["receiving"]["completed"] == 1, snap4()
    assert n4.log().count("received from node") == 1, n4.log()[-3000:]

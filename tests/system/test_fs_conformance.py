"""The conformance table (tests/conformance/table.txt, run by
tests/conformance/conform.py) against one node's mount: every expectation
of every case; a failure lists the lines that did not hold."""
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))

import conform  # noqa: E402

TABLE = os.path.join(HERE, "..", "conformance", "table.txt")


def test_conformance_table(node):
    out = io.StringIO()
    failures = conform.run(node.mnt, TABLE, out=out)
    assert conform.count(TABLE) >= 250
    assert not failures, "\n".join(failures)

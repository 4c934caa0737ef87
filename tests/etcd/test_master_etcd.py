# SPDX-License-Identifier: ISC
"""tests/master/test_master.py with the cells' membership in etcd: the same
two cells, masters, escalation, failure reports (the probe's verdict reaches
the other line shed through etcd), warm restart and loop tests, with
`membership: {store: etcd}` on every line shed and one real etcd
(tests/master/cluster.py reads SHED_MEMBERSHIP). Masters stay on the push.
"""
import os
import runpy
import sys

os.environ["SHED_MEMBERSHIP"] = "etcd"
here = os.path.dirname(os.path.abspath(__file__))
master = os.path.join(here, "..", "master")
sys.path.insert(0, master)
runpy.run_path(os.path.join(master, "test_master.py"), run_name="__main__")

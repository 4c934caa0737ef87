# SPDX-License-Identifier: ISC
"""tests/reach/test_reach.py with the cells' membership in etcd (join,
leave, restart empty, replica write, cross-cell, writes around a reported
host, lookups): tests/reach/reachenv.py reads SHED_MEMBERSHIP and starts a
local etcd through deploy/local's plan (docs/etcd.md)."""
import os
import runpy
import sys

os.environ["SHED_MEMBERSHIP"] = "etcd"
here = os.path.dirname(os.path.abspath(__file__))
reach = os.path.join(here, "..", "reach")
sys.path.insert(0, reach)
runpy.run_path(os.path.join(reach, "test_reach.py"), run_name="__main__")

# SPDX-License-Identifier: ISC
"""tests/agg/test_agg.py (paging, order, dedup, claims, deletes, wait,
status rules, dead servers) on a cell whose aggregator learns the backends
from etcd only: tests/agg/aggenv.py reads SHED_MEMBERSHIP (docs/etcd.md)."""
import os
import runpy
import sys

os.environ["SHED_MEMBERSHIP"] = "etcd"
here = os.path.dirname(os.path.abspath(__file__))
agg = os.path.join(here, "..", "agg")
sys.path.insert(0, agg)
runpy.run_path(os.path.join(agg, "test_agg.py"), run_name="__main__")

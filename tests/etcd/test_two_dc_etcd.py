# SPDX-License-Identifier: ISC
"""tests/deploy/test_two_dc.py (two datacenters in network namespaces, real
DNS, escalation through the masters when one datacenter's backends are cut
off, traffic coming home, nothing acknowledged lost) with one etcd per
datacenter holding its cell's membership (SHED_MEMBERSHIP=etcd,
docs/etcd.md). Needs root, like the original (exit 77 otherwise)."""
import os
import runpy
import sys

os.environ["SHED_MEMBERSHIP"] = "etcd"
here = os.path.dirname(os.path.abspath(__file__))
deploy = os.path.join(here, "..", "deploy")
sys.path.insert(0, deploy)
runpy.run_path(os.path.join(deploy, "test_two_dc.py"), run_name="__main__")

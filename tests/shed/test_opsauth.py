# SPDX-License-Identifier: ISC
"""ops_credential: the endpoints that name every member (/metrics, the
status JSON and page, a master's view) answer 401 without the cluster
credential and 200 with it; routing needs no credential either way."""
import os

import harness

CRED = "ops-secret"


def test_ops_endpoints_need_the_credential():
    d = harness.tmpdir()
    port = harness.free_port()
    conf = os.path.join(d, "shed.yaml")
    with open(conf, "w") as f:
        f.write("""cell: t
roles: [line, master]
listen: ["127.0.0.1:%d"]
default_service: burrow
credential: %s
ops_credential: true
cells: [{name: t, proximity: 10, sheds: ["http://127.0.0.1:%d"]}]
""" % (port, CRED, port))
    shed = harness.Proc([harness.binary("shed"), "-c", conf], name="shed")
    harness.wait_port("127.0.0.1", port, proc=shed)
    base = "http://127.0.0.1:%d" % port
    auth = {"Authorization": "Bearer " + CRED}
    for path in ("/metrics", "/_shed/v1/status", "/_shed/v1/status.html", "/_shed/v1/master"):
        r = harness.request("GET", base + path)
        assert r.status == 401, (path, r.status)
        assert b"credential" in r.body, (path, r.body)
        r = harness.request("GET", base + path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, (path, r.status)
        r = harness.request("GET", base + path, headers=auth)
        assert r.status == 200, (path, r.status)
    # Burrow requests need nothing (no backend yet: the usual 503).
    r = harness.request("GET", base + "/v1.0/a/q/m")
    assert r.status == 503, r.status
    shed.stop()


if __name__ == "__main__":
    harness.run_tests([("ops_endpoints_need_the_credential", test_ops_endpoints_need_the_credential)])

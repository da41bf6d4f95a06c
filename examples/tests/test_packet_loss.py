"""A fault on a live cluster: 30% loss on what worker-2 sends shows on a ping series from worker-1, and
is gone once cleared. The same calls partition nodes (fault_partition), cap a node's rate (fault_rate)
or cut its cable (fault_link_down); every fault lives only in the cluster's namespaces."""

import re


def lost_percent(cluster, src, dst, count):
    address = cluster.topology.member(dst).address
    done = cluster.exec(src, "ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", "2", address, timeout=60)
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", done.stdout).groups())
    return 100 * (sent - received) / sent


def test_loss_on_a_node_shows_on_a_ping_series(kubesim_cluster):
    kubesim_cluster.fault_loss(30, "worker-2")
    try:
        assert kubesim_cluster.fault_list() == [{"type": "loss", "node": "worker-2", "percent": 30}]
        # 200 pings at 30%: a wide band, since loss is random (its standard deviation is about 3 points).
        assert 15 <= lost_percent(kubesim_cluster, "worker-1", "worker-2", 200) <= 45
    finally:
        kubesim_cluster.fault_clear()
    assert lost_percent(kubesim_cluster, "worker-1", "worker-2", 20) <= 10

"""A ClusterIP Service spreads new connections over every ready endpoint."""

from workloads import netexec, service


def test_new_connections_reach_every_endpoint(kubesim_cluster):
    kubesim_cluster.apply(netexec("spread", 3), service("spread"))
    kubesim_cluster.wait_endpoints("spread", 3)
    destination = f"{kubesim_cluster.service_ip('spread')}:80"
    # kube-proxy programs endpoints a sync after the API has them: wait for the rules to say so.
    kubesim_cluster.wait_trace("worker-1", destination, "DNAT", endpoints=3, count=60)
    trace = kubesim_cluster.trace("worker-1", destination, count=60)
    assert trace.verdict == "DNAT" and len(trace.endpoints) == 3, trace

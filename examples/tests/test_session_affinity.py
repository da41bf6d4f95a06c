"""sessionAffinity: ClientIP pins every connection of one client to one endpoint."""

from workloads import netexec, service


def test_one_client_meets_one_endpoint(kubesim_cluster):
    kubesim_cluster.apply(netexec("sticky", 3), service("sticky", sessionAffinity="ClientIP"))
    kubesim_cluster.wait_endpoints("sticky", 3)
    destination = f"{kubesim_cluster.service_ip('sticky')}:80"
    kubesim_cluster.wait_trace("worker-2", destination, "DNAT")
    trace = kubesim_cluster.trace("worker-2", destination, count=20)
    assert trace.verdict == "DNAT" and len(trace.endpoints) == 1, trace

"""NodePort with externalTrafficPolicy: Local. A node with a local endpoint keeps the client's address
(no masquerade); a node without one drops what comes from outside."""

from workloads import netexec, service


def test_the_client_address_survives_and_a_node_without_endpoints_drops(kubesim_cluster):
    kubesim_cluster.apply(netexec("local-only", node="worker-1"),
                          service("local-only", type="NodePort", externalTrafficPolicy="Local"))
    kubesim_cluster.wait_endpoints("local-only", 1)
    node_port = kubesim_cluster.get("service", "local-only")["spec"]["ports"][0]["nodePort"]
    topology = kubesim_cluster.topology
    with_endpoint, without = topology.member("worker-1").address, topology.member("worker-2").address
    client = topology.member("client").address

    kept = kubesim_cluster.wait_trace("client", f"{with_endpoint}:{node_port}", "DNAT")
    assert not kept.masquerade, kept
    answer = kubesim_cluster.http("client", f"http://{with_endpoint}:{node_port}/clientip")
    assert answer.status == 200 and answer.body.split(":")[0] == client, answer
    # worker-2's kube-proxy programs the Service on its own schedule: wait for its verdict too (an
    # AssertionError with the last trace if it never drops).
    kubesim_cluster.wait_trace("client", f"{without}:{node_port}", "DROP")

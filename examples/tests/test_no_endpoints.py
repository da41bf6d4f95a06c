"""A Service whose selector matches no pod refuses at once: kube-proxy REJECTs, nothing times out."""

import pytest
from workloads import service


def test_a_service_without_endpoints_rejects(kubesim_cluster):
    kubesim_cluster.apply(service("lonely", selector={"app": "nobody-has-this-label"}))
    address = kubesim_cluster.service_ip("lonely")
    trace = kubesim_cluster.wait_trace("worker-1", f"{address}:80", "REJECT")
    assert trace.endpoints == (), trace
    with pytest.raises(ConnectionRefusedError):
        kubesim_cluster.http("worker-1", f"http://{address}/")

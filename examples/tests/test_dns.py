"""A pod reaches a Service by its short name: the pod's search path (<namespace>.svc.cluster.local
first) and the cluster DNS turn `named` into its ClusterIP, then kube-proxy picks an endpoint."""

from workloads import netexec, service

from kubesim.testing import eventually


def test_a_pod_reaches_a_service_by_its_short_name(kubesim_cluster):
    kubesim_cluster.apply(netexec("named", 2), service("named"))
    pods = kubesim_cluster.wait_ready("app=named", count=2)
    kubesim_cluster.wait_ready("k8s-app=kube-dns", namespace="kube-system")
    client = f"default/{pods[0]['metadata']['name']}"
    # The DNS pods and kube-proxy follow the API within a sync: retry while they catch up.
    answer = eventually(lambda: kubesim_cluster.http(client, "http://named/hostname"))
    assert answer.status == 200
    assert answer.body in {p["metadata"]["name"] for p in pods}, answer

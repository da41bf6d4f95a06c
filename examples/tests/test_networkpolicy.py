"""A default-deny ingress policy: a pod of another namespace is dropped, and the trace names the policy
that decided it.

A trace follows the packet through one node, and ingress policy is judged on the destination pod's
node (by the network-policy agent there); the two pods share worker-1 so that one trace sees both
kube-proxy's DNAT and the policy's drop."""

from workloads import netexec, service

DENY_ALL_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress, namespace: guarded}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


def test_default_deny_drops_and_the_trace_names_the_policy(kubesim_cluster):
    kubesim_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guarded"}},
                          netexec("web", namespace="guarded", node="worker-1"), service("web", namespace="guarded"),
                          netexec("outsider", node="worker-1", ready_probe=False))
    kubesim_cluster.wait_endpoints("web", 1, namespace="guarded")
    outsider = f"default/{kubesim_cluster.wait_ready('app=outsider', count=1)[0]['metadata']['name']}"
    destination = f"{kubesim_cluster.service_ip('web', namespace='guarded')}:80"
    kubesim_cluster.wait_trace(outsider, destination, "DNAT")

    kubesim_cluster.apply(DENY_ALL_INGRESS)
    trace = kubesim_cluster.wait_trace(outsider, destination, "DROP")  # the agent syncs a moment later
    assert any("guarded/deny-all-ingress" in hop.rule for hop in trace.hops), trace

"""A default-deny ingress policy: a pod of another namespace is dropped, and the trace names the policy
that decided it.

A trace follows the packet through one node, and ingress policy is judged on the destination pod's
node (by the network-policy agent there); the two pods share worker-1 so that one trace sees both
kube-proxy's DNAT and the policy's drop."""

GUARDED = """
apiVersion: v1
kind: Namespace
metadata: {name: guarded}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: guarded}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: worker-1}
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=8080"]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: guarded}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: outsider}
spec:
  replicas: 1
  selector: {matchLabels: {app: outsider}}
  template:
    metadata: {labels: {app: outsider}}
    spec:
      nodeSelector: {kubernetes.io/hostname: worker-1}
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=8080"]
"""

DENY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress, namespace: guarded}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""


def test_default_deny_drops_and_the_trace_names_the_policy(kubesim_cluster):
    kubesim_cluster.apply(GUARDED)
    kubesim_cluster.wait_endpoints("web", 1, namespace="guarded")
    outsider = f"default/{kubesim_cluster.wait_ready('app=outsider', count=1)[0]['metadata']['name']}"
    destination = f"{kubesim_cluster.service_ip('web', namespace='guarded')}:80"
    kubesim_cluster.wait_trace(outsider, destination, "DNAT")

    kubesim_cluster.apply(DENY)
    trace = kubesim_cluster.wait_trace(outsider, destination, "DROP")  # the agent syncs a moment later
    assert any("guarded/deny-all-ingress" in hop.rule for hop in trace.hops), trace

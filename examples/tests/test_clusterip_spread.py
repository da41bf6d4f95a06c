"""A ClusterIP Service spreads new connections over every ready endpoint."""

ECHO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=8080"]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: spread}
spec:
  selector: {app: spread}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_new_connections_reach_every_endpoint(kubesim_cluster):
    kubesim_cluster.apply(ECHO)
    kubesim_cluster.wait_endpoints("spread", 3)
    # kube-proxy programs the endpoints a sync after the API has them: wait for the rules to say so.
    kubesim_cluster.wait_trace("worker-1", f"{kubesim_cluster.service_ip('spread')}:80", "DNAT", endpoints=3,
                               count=60)
    trace = kubesim_cluster.trace("worker-1", f"{kubesim_cluster.service_ip('spread')}:80", count=60)
    assert trace.verdict == "DNAT" and len(trace.endpoints) == 3, trace

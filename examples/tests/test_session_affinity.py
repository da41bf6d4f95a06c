"""sessionAffinity: ClientIP pins every connection of one client to one endpoint."""

STICKY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sticky}
spec:
  replicas: 3
  selector: {matchLabels: {app: sticky}}
  template:
    metadata: {labels: {app: sticky}}
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=8080"]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: sticky}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
"""


def test_one_client_meets_one_endpoint(kubesim_cluster):
    kubesim_cluster.apply(STICKY)
    kubesim_cluster.wait_endpoints("sticky", 3)
    destination = f"{kubesim_cluster.service_ip('sticky')}:80"
    kubesim_cluster.wait_trace("worker-2", destination, "DNAT")
    trace = kubesim_cluster.trace("worker-2", destination, count=20)
    assert trace.verdict == "DNAT" and len(trace.endpoints) == 1, trace

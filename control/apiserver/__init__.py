"""kubesim apiserver: Kubernetes-shaped REST + watch over HTTPS."""

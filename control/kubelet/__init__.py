"""The kubelet: registers its node, heartbeats, and runs the pods bound to it in real network
namespaces (netsim sandboxes), with built-in workloads or real processes as containers."""

"""`python -m proxy` is `kubesim proxy`: one node's kube-proxy (see kubesim/cli.py for the flags)."""

from kubesim.cli import proxy_main

proxy_main()

"""kubesim's network-policy agent: the role kube-network-policies plays in kind.

One per node. It reads NetworkPolicies, AdminNetworkPolicies, the BaselineAdminNetworkPolicy, Pods and
Namespaces from the apiserver and judges the connections of the node's own pods in the kernel. The
modules, from the API inwards:

    model    API objects (JSON) -> immutable Policy / Pod / Namespace values; what cannot be
             understood matches nothing and says why
    admin    AdminNetworkPolicy / BaselineAdminNetworkPolicy -> AdminPolicy, in the model's terms
    decide   the semantics as the API documents them: may this packet pass, and which rule said so
    nftables a node's ruleset: verdict maps by pod address into one chain per group of policies
    iptables the same as KUBE-NWPLCY-* chains, for clusters whose kube-proxy runs in iptables mode
    server   the agent process: informers -> bounded-frequency sync -> one nft or iptables-restore
             transaction
"""

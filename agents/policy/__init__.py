"""NetworkPolicy enforcement on a node, Calico-style.

The pure core turns what the API serves (Pods, Namespaces, NetworkPolicies)
into per-node rules and renders them for iptables or nftables:

    model.py            the input objects (frozen dataclasses) and label selectors
    evaluate.py         the expected verdict for one connection, straight from the spec
    compute.py          per-node rules as plain data (workloads, shared policy chains)
    render_iptables.py  iptables-restore --noflush input for the filter table
    render_nft.py       nft -f input replacing table ip svclab-netpol

compute.py and evaluate.py are independent of each other on purpose: a tracer
walking the rendered rules must reach the same verdict as the evaluator.
"""

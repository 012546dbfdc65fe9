"""Programs that run inside lab hosts; each learns state only through the API.

    proxy/      the node proxy agent (kube-proxy's job): iptables and nftables modes
    dns/        cluster DNS (kube-dns) and the internet's public DNS
    elb/        the AWS-style load balancer on the `elb` host (Classic and NLB)
    workload/   the built-in workload server a pod runs
"""

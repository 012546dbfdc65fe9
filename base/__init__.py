"""The ground layer: what every other part of svclab stands on.

It imports nothing of svclab (the layers contract in pyproject.toml checks
that); everything above may import it.

    errors      typed errors and the exit code each maps to
    waiting     the one wait loop with a deadline
    kube/       the Kubernetes REST client and informers (list + watch)
    cri         the pod runtime interface between the kubelet and the lab's runtime
    elb_api     the ELB's configuration: the cloud controller writes it, the ELB agent applies it
"""

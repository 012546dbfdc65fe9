"""The control plane: the API server and everything that reconciles through it.

It knows the lab only through the API and the two contracts in base/ (the pod
runtime interface and the ELB's configuration); it never touches the kernel,
and the layers contract keeps it independent of topo/ and agents/.

    api/            the Kubernetes REST subset the real kubectl drives (HTTPS, watch, tables)
    controllers/    deployments, replicasets, scheduler, endpoints/EndpointSlices, GC
    kubelet/        one kubelet per node: pod workers, probes, status; runs pods through base.cri
    cloud/          the cloud controller: Services of type LoadBalancer -> the ELB's config
    events          EventRecorder: components' Events, aggregated as client-go does
    control_plane   ControlPlane: controllers and kubelets as threads, started and stopped together
"""

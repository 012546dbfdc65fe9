"""The lab's kernel side: from a cluster spec to namespaces, links, routes and rules.

Config as data, then render, then apply: `spec` and `plan` are pure, the rest
touches the kernel.  Nothing here knows the control plane; the pod runtime
implements base.cri for the kubelet.

    spec, fields   the cluster spec, parsed and validated (every error names its field)
    plan           the pure lab plan: hosts, links, addresses, routes, per-host rules
    hosts          Mininet host classes that always live in their own namespaces
    network        LabNetwork: builds a plan into hosts and owns their lifetime
    netns          run commands in a host's namespaces; processes known by PID and start time
    pod_runtime    LabPodRuntime: pods as hosts, containers as processes (implements base.cri)
    sessions       exec sessions in a pod's namespaces: program lookup, pipes or a pty, reaping
    consoles       container output pump, consoles for stdin/tty containers, attach
    crilog         the CRI log format each container's stdout/stderr is kept in
    node_probes    tcpSocket/httpGet probes from a node's network namespace
    elb            the ELB's kernel side: its VPC MAC and the nodes' NLB return path
    apihost        where the API server listens (loopback and the control plane's :6443)
    state          the lab's state folder: what it owns, recorded
    cleanup        scoped cleanup of what a lab recorded, and nothing else
"""

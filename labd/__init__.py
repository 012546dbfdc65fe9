"""The lab daemon and its lifecycle: where topo/, agents/ and controlplane/ meet.

`svclab up` (lifecycle) starts `python -m labd.daemon NAME`, which builds the
lab's network (topo/), starts the in-host programs (agents/) and the control
plane (controlplane/), and tears all of it down in reverse order.

    lifecycle    up, down, status, exec, clean: the client side the CLI and experiments use
    daemon       the lab daemon: owns one lab for its whole life
    components   starts the per-node proxy agents and the outside world in their hosts
    addons       cluster DNS, installed as kubeadm does
    elb          the ELB agent in the `elb` host and its cloud controller
    lb_status    `svclab lb status`: the ELB agent's status, read and rendered
    supervisor   restarts an in-host agent that died, and records it
    control      the daemon's control socket (JSON lines over a root-only Unix socket)
"""

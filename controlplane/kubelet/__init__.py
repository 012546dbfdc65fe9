"""svclab's kubelet: one per node, running pods as lab hosts and processes."""

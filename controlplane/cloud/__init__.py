"""The emulated AWS cloud: the controller that provisions ELBs for LoadBalancer Services."""

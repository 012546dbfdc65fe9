"""`svclab trace`: one connection, captured on every host it can cross, explained.

    probe    the entry point: plan which hosts to capture on, send, capture, explain
    send     the one connection, sent from inside the source host (`python -m probes.trace.send`)
    pcap     read the capture folder's pcaps into packets
    flow     follow the connection through NAT from host to host (pure)
    rules    which proxy rules decided each hop: the proxy tracers with their chain path
    topology which topology rule (hints) chose the endpoints of the service chain taken
    report   the Trace record, its JSON and its readable form
    l7       what an ALB decides for the traced request: listener, rule, targets (pure)
    alb      read the ALB's config and health; its part of each leg
"""

"""Probes: what a packet really does in a running lab.

    reach, sockprobe   one new flow per probe: open, refused, rejected or dropped
    runner, targets    run probes from a host; what --to means
    hostproc           run a probe program in a host, relaying its progress
    spread/            which endpoint answers each of N new connections
    stats              goodness of fit for spreads
    matrix/            every source against every Service entry, expected vs seen
    dnsprobe           a DNS question from inside a host, as that host would ask it
    capture/           tcpdump inside chosen hosts
    trace/             one connection followed through every hop and rule
"""

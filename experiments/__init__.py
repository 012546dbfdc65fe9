"""Reproducible experiments: each builds its own lab, writes data, plots and a summary.

    framework           what every experiment shares: Context, LabClient, Summary
    runner              finds and runs them (`svclab experiment list|run NAME`)
    cluster_ops         deployments, pods, services and waits the experiments share
    load/               a steady client load from inside a pod
    scale_measurement   the nftables-vs-iptables measurement (also used by benchmarks/)
    netpol_cases, netpol_lab, zones_model   the netpol and zones experiments' parts
    ingress_legs        the ingress experiment's legs from its captures (pure)
    soak_schedule, soak_probes, soak_traffic, soak_checks, soak_monitor, soak_report
                        the soak's plan (pure), traffic, leftover checks, sampling, report
    seed_walkthrough, distribution, traffic_policy, failover, scale, netpol, zones,
    ingress, soak       the experiments
"""

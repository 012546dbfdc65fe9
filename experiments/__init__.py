"""Reproducible experiments: each builds its own lab, writes data, plots and a summary.

    framework           what every experiment shares: Context, LabClient, Summary
    runner              finds and runs them (`svclab experiment list|run NAME`)
    cluster_ops         deployments, pods, services and waits the experiments share
    load/               a steady client load from inside a pod
    scale_measurement   the nftables-vs-iptables measurement (also used by benchmarks/)
    seed_walkthrough, distribution, traffic_policy, failover, scale   the experiments
"""

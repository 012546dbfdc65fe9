"""Test-only helpers shared by the test tiers (importable as `support.*`).

    fake_runtime        FakePodRuntime: the kubelet's runtime interface in memory
    controller_harness  InProcessCluster: API server on loopback + control plane + fake runtime
    nft_listing         `nft list table` output as comparable blocks
"""

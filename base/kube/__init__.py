"""Kubernetes API access for svclab's controllers and agents."""

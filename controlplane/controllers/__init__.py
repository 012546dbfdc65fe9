"""svclab's controllers: deployments, replicasets, scheduler, endpoints, garbage collection.

Each controller learns state only through the API (informers), computes the
changes it wants with pure functions, and writes them back through the API.
"""

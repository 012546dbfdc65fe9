"""A steady client load from inside a lab pod (the failover experiment's client).

    steady   SteadyLoad: the lab side, a context manager that owns the worker
    worker   the client inside the pod: new connections at a fixed rate
             (`python -m experiments.load.worker`)
"""

"""`svclab probe spread`: which endpoint answers each of N new connections.

    probe    the lab side: start the worker in the source host, summarise, test the fit
    worker   the engine inside the host: many new connections at once
             (`python -m probes.spread.worker`)
"""

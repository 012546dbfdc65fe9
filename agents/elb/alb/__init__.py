"""The Application Load Balancer inside the ELB agent: an HTTP/1.1 reverse proxy
on each ALB's VIPs, programmed by base/alb_api.py's config file.

Pure parts (rule matching, HTTP heads and header rewriting, balancing, the
access-log line) are modules of their own; proxy.py and service.py do the I/O.
"""

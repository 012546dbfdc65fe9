"""AWS-style load-balancer names and DNS names, derived from the Service UID.

cloud-provider-aws names a load balancer "a" + the Service UID without dashes,
cut to AWS's 32-character limit; the DNS name adds a number (Classic ELB) or
16 hex digits (NLB) and the region's domain:

    Classic  a1b2...(32)-1234567890.us-east-1.elb.amazonaws.com
    NLB      a1b2...(32)-0123456789abcdef.elb.us-east-1.amazonaws.com

Deterministic: the same UID always gives the same name (a restarted
controller finds the same records).
"""
from __future__ import annotations

import hashlib

REGION = "us-east-1"
NAME_LIMIT = 32
DOMAINS = (f".{REGION}.elb.amazonaws.com", f".elb.{REGION}.amazonaws.com")


def load_balancer_name(uid: str) -> str:
    return ("a" + uid.replace("-", ""))[:NAME_LIMIT]


def classic_hostname(uid: str) -> str:
    digits = int.from_bytes(hashlib.sha256(f"clb/{uid}".encode()).digest()[:8], "big")
    return f"{load_balancer_name(uid)}-{digits % 10**10:010d}.{REGION}.elb.amazonaws.com"


def nlb_hostname(uid: str) -> str:
    suffix = hashlib.sha256(f"nlb/{uid}".encode()).hexdigest()[:16]
    return f"{load_balancer_name(uid)}-{suffix}.elb.{REGION}.amazonaws.com"


def is_elb_hostname(name: str) -> bool:
    return any(name.endswith(domain) for domain in DOMAINS)

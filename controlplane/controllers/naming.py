"""Kubernetes' names for generated objects: pod-template-hash and random suffixes.

ReplicaSets are named `<deployment>-<pod-template-hash>` and their pods
`<replicaset>-<5 random chars>`, both drawn from apimachinery's alphabet
without vowels (so `hwk-66fdbfb65d-smrz5`).  The hash is the one of
`controller.ComputeHash`: FNV-32a over the pod template, then the collision
count as 8 little-endian bytes, printed in decimal and re-encoded character
by character with `rand.SafeEncodeString`.

Kubernetes feeds FNV the go-spew dump of the Go PodTemplateSpec struct; that
dump depends on the Go type definitions of one Kubernetes release, so here
the template's canonical JSON (sorted keys, no spaces) is hashed instead.
The hash therefore has the same shape, alphabet, stability and collision
behaviour, but not the same value a real cluster prints for the same template.
"""
from __future__ import annotations

import json
import random

from base.jsoncopy import json_copy

# apimachinery/pkg/util/rand: "We omit vowels ... to reduce the chances of bad words".
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
POD_TEMPLATE_HASH = "pod-template-hash"
FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv32a(data: bytes, start: int = FNV32_OFFSET) -> int:
    value = start
    for byte in data:
        value ^= byte
        value = (value * FNV32_PRIME) & 0xFFFFFFFF
    return value


def safe_encode_string(text: str) -> str:
    """rand.SafeEncodeString: every character c becomes ALPHANUMS[ord(c) % 27]."""
    return "".join(ALPHANUMS[ord(ch) % len(ALPHANUMS)] for ch in text)


def template_for_hash(template: dict) -> dict:
    """The template as hashed: without the pod-template-hash label it will carry."""
    clean = json_copy(template or {})
    labels = (clean.get("metadata") or {}).get("labels")
    if labels and POD_TEMPLATE_HASH in labels:
        del labels[POD_TEMPLATE_HASH]
    return clean


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """controller.ComputeHash(template, collisionCount) over the canonical JSON."""
    data = json.dumps(template_for_hash(template), sort_keys=True,
                      separators=(",", ":")).encode()
    value = fnv32a(data)
    if collision_count is not None:
        value = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), value)
    return safe_encode_string(str(value))


def random_suffix(length: int = 5, rng: random.Random | None = None) -> str:
    """utilrand.String(n): the suffix of generated pod and slice names."""
    rng = rng or random
    return "".join(rng.choice(ALPHANUMS) for _ in range(length))


def generated_name(base: str, rng: random.Random | None = None) -> str:
    """`<base>-<5 chars>`, with base cut so the name stays within 63 characters."""
    return f"{base[:57]}-{random_suffix(5, rng)}"

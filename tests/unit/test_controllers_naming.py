"""Generated names: pod-template-hash and pod suffixes look and behave like Kubernetes'."""
from __future__ import annotations

import random

from controlplane.controllers.naming import (
    ALPHANUMS,
    compute_hash,
    fnv32a,
    generated_name,
    safe_encode_string,
)

TEMPLATE = {"metadata": {"labels": {"app": "hwk"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}


def test_fnv32a_matches_the_published_test_vectors():
    # FNV-1a 32-bit reference values (Fowler/Noll/Vo test suite).
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_safe_encode_maps_digits_like_apimachinery():
    # rand.SafeEncodeString: '0'..'9' (48..57) -> alphanums[c % 27]
    assert safe_encode_string("0123456789") == "456789bcdf"
    # The seed's ReplicaSet hwk-66fdbfb65d is the encoding of the number 2298696218.
    assert safe_encode_string("2298696218") == "66fdbfb65d"


def test_hash_is_stable_and_ignores_its_own_label():
    labelled = {"metadata": {"labels": {"app": "hwk", "pod-template-hash": "x"}},
                "spec": TEMPLATE["spec"]}
    assert compute_hash(TEMPLATE) == compute_hash(TEMPLATE) == compute_hash(labelled)
    assert len(compute_hash(TEMPLATE)) in (9, 10)
    assert set(compute_hash(TEMPLATE)) <= set("456789bcdf")


def test_hash_changes_with_the_template_and_the_collision_count():
    other = {"metadata": TEMPLATE["metadata"],
             "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
    hashes = {compute_hash(TEMPLATE), compute_hash(other), compute_hash(TEMPLATE, 0),
              compute_hash(TEMPLATE, 1)}
    assert len(hashes) == 4


def test_generated_names_use_the_vowel_free_alphabet():
    name = generated_name("hwk-66fdbfb65d", random.Random(1))
    prefix, suffix = name.rsplit("-", 1)
    assert prefix == "hwk-66fdbfb65d" and len(suffix) == 5 and set(suffix) <= set(ALPHANUMS)
    assert len(generated_name("x" * 80)) == 63

"""KubeClient.find: the object, or None when it does not exist."""

from __future__ import annotations


def test_find_gives_the_object_or_none(api_client):
    assert api_client.find("services", "web", "default") is None
    api_client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]}}, namespace="default")
    found = api_client.find("services", "web", "default")
    assert found["metadata"]["name"] == "web"

"""Authorization: kube-apiserver's RBAC authorizer, its request attributes, reviews,
impersonation, the escalation check and the bootstrap policy.

Pure parts (attributes, rules, the index, escalation's ``covers``) take data and
return data; ``authorizer.Authorizer`` reads the RBAC objects from the store and
keeps an index current with the store's revisions.
"""

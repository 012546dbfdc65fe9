"""The CLI's `svclab node add|remove`: nodes joining and leaving a running lab.

Argument definitions and two small functions over labd.lifecycle; they return
exit codes and raise SvclabError like every command (svclab.cli prints).
"""
from __future__ import annotations

import json

from labd import lifecycle


def add_node_commands(sub) -> None:
    p = sub.add_parser("node", help="nodes joining and leaving a running lab")
    node_sub = p.add_subparsers(dest="node", required=True, parser_class=type(p))

    add = node_sub.add_parser(
        "add", help="join a new node (kubeadm join on a new EC2 instance)",
        description="join a new node: its host in the VPC, routes on every node, "
                    "kubelet, kube-proxy and calico-node, its Node object")
    add.add_argument("node", nargs="?", metavar="NAME",
                     help="node name (default: its EC2 name, ip-A-B-C-D)")
    add.add_argument("--zone", help="its Availability Zone (labs with zones; default: "
                                    "the zone with the fewest nodes)")
    add.add_argument("--role", default="worker", help="worker (the only role that can join)")
    add.add_argument("--address", help="its private address (default: the first free one "
                                       "in its subnet)")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=cmd_node_add)

    remove = node_sub.add_parser(
        "remove", help="cordon, drain, delete the Node and terminate its machine",
        description="kubectl drain --ignore-daemonsets --force, kubectl delete node, "
                    "and the machine going away")
    remove.add_argument("node", metavar="NAME")
    remove.add_argument("--json", action="store_true")
    remove.set_defaults(func=cmd_node_remove)
    for parser in (add, remove):
        parser.add_argument("--name", default=lifecycle.DEFAULT_NAME,
                            help="lab name (default: %(default)s)")


def cmd_node_add(args) -> int:
    joined = lifecycle.node_add(args.name, args.node, args.zone, args.role, args.address)
    if args.json:
        print(json.dumps(joined))
        return 0
    zone = f", zone {joined['zone']}" if joined.get("zone") else ""
    print(f"node/{joined['name']} joined lab {args.name!r} in {joined['seconds']:.2f} s: "
          f"host {joined['host']}, {joined['address']} (public {joined['publicIP']}), "
          f"pod block {joined['podBlock']}{zone}")
    return 0


def cmd_node_remove(args) -> int:
    removed = lifecycle.node_remove(args.name, args.node)
    if args.json:
        print(json.dumps(removed))
        return 0
    print(f"node/{removed['name']} cordoned")
    for pod in removed["evicted"]:
        print(f"pod/{pod} evicted")
    for pod in removed["deleted"]:
        print(f"pod/{pod} evicted (DaemonSet, once its node was deleted)")
    print(f"node/{removed['name']} drained, deleted and removed from lab {args.name!r} "
          f"in {removed['seconds']:.2f} s")
    return 0

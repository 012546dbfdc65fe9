"""The `svclab` command line: parse, dispatch, and the one error boundary.

Every command is a small function returning an exit code; library errors
(SvclabError) become a one-line message on stderr and their exit code
(1 failure, 2 bad usage or input) here and nowhere else.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

import yaml

from base.errors import SvclabError, UsageError
from experiments.runner import describe, run
from labd import lifecycle
from labd.lb_status import lb_status, render_lb_status
from labd.lifecycle import DEFAULT_NAME
from svclab.node_commands import add_node_commands
from svclab.probe_commands import add_probe_commands
from topo.network import inter_zone_latency_notice
from topo.plan import describe_zones
from topo.spec import ClusterSpec, read_spec_data, with_zones
from topo.state import LabPaths


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting."""

    def error(self, message: str):
        where = self.prog.removeprefix("svclab").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="svclab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def named(cmd: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(cmd, help=help, description=help)
        p.add_argument("--name", default=DEFAULT_NAME, help="lab name (default: %(default)s)")
        return p

    p = named("up", "start a lab and return when it is ready")
    p.add_argument("-f", "--file", help="cluster spec YAML (default: the seed's 3-node cluster)")
    p.add_argument("--proxy-mode", choices=("iptables", "nftables"))
    p.add_argument("--zones", type=int, metavar="N",
                   help="spread a spec without zones over N Availability Zones (1-6)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_up)

    p = named("down", "stop a lab")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_down)

    p = named("status", "show a lab's hosts and addresses")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = named("exec", "run a command inside a lab host")
    p.add_argument("-n", "--namespace", help="Kubernetes namespace of a pod (default: default)")
    p.add_argument("host", help="node name, pod name, client, igw")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("lb", help="the lab's AWS-style load balancer")
    lb_sub = p.add_subparsers(dest="lb", required=True, parser_class=_Parser)
    lb_status = lb_sub.add_parser("status", help="load balancers, listeners, target health")
    lb_status.add_argument("--name", default=DEFAULT_NAME, help="lab name")
    lb_status.add_argument("--json", action="store_true")
    lb_status.set_defaults(func=cmd_lb_status)

    p = named("kubectl", "run the bundled kubectl against the lab")
    p.add_argument("args", nargs=argparse.REMAINDER, help="kubectl arguments")
    p.set_defaults(func=cmd_kubectl)

    p = named("kubeconfig", "print the path of the lab's kubeconfig")
    p.set_defaults(func=cmd_kubeconfig)

    p = named("clean", "remove what a crashed lab left behind (only what it recorded)")
    p.add_argument("--all", action="store_true", help="every lab with a state folder")
    p.set_defaults(func=cmd_clean)

    add_probe_commands(sub, named)
    add_node_commands(sub)

    p = sub.add_parser("experiment", help="reproducible experiments (each builds its own lab)")
    exp_sub = p.add_subparsers(dest="experiment", required=True, parser_class=_Parser)
    exp_sub.add_parser("list", help="the experiments").set_defaults(func=cmd_experiment_list)
    run = exp_sub.add_parser("run", help="run one; writes CSV/JSON, PNG and summary.md")
    run.add_argument("experiment_name", metavar="NAME")
    run.add_argument("--out", help="output folder (default results/NAME)")
    run.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--duration", type=float, metavar="SECONDS",
                     help="how long an experiment that runs for a set time runs (soak)")
    run.set_defaults(func=cmd_experiment_run)
    return parser


# --- commands ----------------------------------------------------------------

def cmd_up(args) -> int:
    with _spec_file(args.file, args.zones) as spec_file:
        if args.dry_run:
            print(lifecycle.dry_run(spec_file, args.proxy_mode), end="")
            return 0
        result = lifecycle.up(args.name, spec_file, args.proxy_mode, args.timeout)
    if args.json:
        print(json.dumps({"name": result.name, "seconds": round(result.seconds, 3),
                          "hosts": len(result.state.hosts)}))
    else:
        print(f"lab {result.name!r} ready in {result.seconds:.2f} s "
              f"({len(result.state.hosts)} hosts)")
        state, spec = lifecycle.status(args.name)
        print(lifecycle.status_table(state, spec))
        print(_zones_text(args.name, spec), end="")
    return 0


def cmd_down(args) -> int:
    seconds = lifecycle.down(args.name, args.timeout)
    print(f"lab {args.name!r} stopped in {seconds:.2f} s")
    return 0


def cmd_status(args) -> int:
    state, spec = lifecycle.status(args.name)
    if args.json:
        out = state.to_json()
        out["iptablesBackend"] = spec.iptables_backend
        if spec.network.zones:
            out["zones"] = _zones_json(args.name, spec)
        print(json.dumps(out, indent=1))
    else:
        print(lifecycle.status_table(state, spec))
        print(_zones_text(args.name, spec), end="")
    return 0


@contextlib.contextmanager
def _spec_file(path: str | None, zones: int | None):
    """The spec file to start: the given one, or (--zones N) that spec spread
    over N zones, written to a temporary file for as long as `up` needs it."""
    if zones is None:
        yield path
        return
    data = with_zones(read_spec_data(path), zones)
    with tempfile.NamedTemporaryFile("w", prefix="svclab-zones-", suffix=".yaml") as out:
        yaml.safe_dump(data, out, sort_keys=False)
        out.flush()
        yield out.name


def _zones_text(name: str, spec: ClusterSpec) -> str:
    """The zones and their nodes, and what became of the inter-zone latency."""
    lines = list(describe_zones(spec))
    notice = inter_zone_latency_notice(LabPaths(name)) if spec.network.zones else None
    if notice:
        lines.append(notice)
    return "".join(f"{line}\n" for line in [""] * bool(lines) + lines)


def _zones_json(name: str, spec: ClusterSpec) -> dict:
    net = spec.network
    return {"region": net.region,
            "zones": [{"name": z.name, "subnet": str(z.subnet),
                       "nodes": [n.name for n in spec.nodes if n.zone == z.name]}
                      for z in net.zones],
            "interZoneLatency": inter_zone_latency_notice(LabPaths(name))}


def cmd_exec(args) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    argv = lifecycle.exec_argv(args.name, args.host, args.namespace, command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)   # stdin, stdout, stderr and exit code pass through


def cmd_lb_status(args) -> int:
    rows = lb_status(args.name)
    print(json.dumps(rows, indent=1) if args.json else render_lb_status(rows), end="")
    return 0


def cmd_kubectl(args) -> int:
    argv = lifecycle.kubectl_argv(args.name, args.args)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def cmd_kubeconfig(args) -> int:
    print(lifecycle.kubeconfig(args.name))
    return 0


def cmd_experiment_list(args) -> int:
    for name, title in describe():
        print(f"{name:18} {title}")
    return 0


def cmd_experiment_run(args) -> int:
    lifecycle.require_root()
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"experiment run: --duration: invalid value {args.duration:g}; "
                         "allowed: seconds > 0")
    folder, summary = run(args.experiment_name, args.out, args.quick, args.seed, args.duration)
    print((folder / "summary.md").read_text())
    print(f"results in {folder}/")
    return 0


def cmd_clean(args) -> int:
    names = lifecycle.running_labs() if args.all else [args.name]
    for report in lifecycle.clean(names):
        print(f"lab {report.name!r}: daemon stopped: {report.daemon_stopped}, "
              f"processes stopped: {report.processes_stopped}, "
              f"state removed: {report.state_removed}")
    return 0


# --- entry point ---------------------------------------------------------------

def _kubectl_passthrough(argv: list[str]) -> list[str] | None:
    """`svclab kubectl [--name N] ARGS...`: everything after our own --name goes
    to kubectl untouched (argparse would take kubectl's -n for itself)."""
    if not argv or argv[0] != "kubectl":
        return None
    rest, name = argv[1:], DEFAULT_NAME
    if rest[:1] == ["--name"] and len(rest) > 1:
        name, rest = rest[1], rest[2:]
    elif rest[:1] and rest[0].startswith("--name="):
        name, rest = rest[0].split("=", 1)[1], rest[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return lifecycle.kubectl_argv(name, rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        kubectl = _kubectl_passthrough(argv)
        if kubectl is not None:
            sys.stdout.flush()
            os.execvp(kubectl[0], kubectl)
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SvclabError as err:
        print(f"svclab: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("svclab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`svclab status | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

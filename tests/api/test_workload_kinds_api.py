"""StatefulSets, DaemonSets, Jobs, CronJobs, ReplicationControllers, ControllerRevisions and
Leases served with the same API semantics as the older kinds: discovery (`kubectl
api-resources`, short names, the `all` category), defaulting, the Job's generated selector,
Tables as kubectl prints them, status and scale subresources, generation, server-side apply,
namespace deletion, and the official Python client's typed CRUD, create_from_yaml and watch."""

from __future__ import annotations

import json
import threading

from kubernetes import client, config, utils, watch

from base.kube.client import path_for

MANIFESTS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers: [{name: a, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl, command: [perl, -e, "print 1"]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/5 * * * *"
  timeZone: Etc/UTC
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: hello, image: busybox, command: [date]}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: c, image: nginx}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
"""
NEW_KINDS = {  # name: (short names, api version, namespaced, kind)
    "configmaps": ("cm", "v1", "ConfigMap"), "secrets": ("", "v1", "Secret"),
    "replicationcontrollers": ("rc", "v1", "ReplicationController"),
    "statefulsets": ("sts", "apps/v1", "StatefulSet"),
    "daemonsets": ("ds", "apps/v1", "DaemonSet"),
    "controllerrevisions": ("", "apps/v1", "ControllerRevision"),
    "jobs": ("", "batch/v1", "Job"), "cronjobs": ("cj", "batch/v1", "CronJob"),
    "leases": ("", "coordination.k8s.io/v1", "Lease"),
}


def get_json(kubectl, *args) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def apply(kubectl, tmp_path, text: str = MANIFESTS) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return kubectl("apply", "-f", str(path))


def header_and_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line.split("   ") for line in text.splitlines()]
    cells = [[c.strip() for c in line if c.strip()] for line in lines]
    return cells[0], cells[1:]


def test_api_resources_lists_every_new_kind(kubectl):
    rows = {}
    for line in kubectl("api-resources", "--no-headers").splitlines():
        parts = line.split()
        rows[(parts[0], parts[-3])] = parts
    for name, (short, api_version, kind) in NEW_KINDS.items():
        parts = rows[(name, api_version)]
        assert parts[-1] == kind and parts[-2] == "true"
        assert (parts[1] if len(parts) == 5 else "") == short
    for name in ("statefulsets", "daemonsets", "jobs", "cronjobs", "replicationcontrollers"):
        assert name in kubectl("api-resources", "--categories=all", "-o", "name")
    verbs = kubectl("api-resources", "--api-group=batch", "-o", "wide")
    assert "create,delete,deletecollection,get,list,patch,update,watch" in verbs


def test_apply_defaults_and_tables(kubectl, tmp_path):
    assert apply(kubectl, tmp_path).splitlines() == [
        "statefulset.apps/web created", "daemonset.apps/agent created", "job.batch/pi created",
        "cronjob.batch/hello created", "replicationcontroller/legacy created",
        "lease.coordination.k8s.io/leader created"]
    sts = get_json(kubectl, "sts", "web")
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["revisionHistoryLimit"] == 10
    assert sts["metadata"]["generation"] == 1
    assert sts["spec"]["volumeClaimTemplates"][0]["kind"] == "PersistentVolumeClaim"
    ds = get_json(kubectl, "ds", "agent")
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["status"]["desiredNumberScheduled"] == 0
    cj = get_json(kubectl, "cj", "hello")
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"],
            cj["spec"]["successfulJobsHistoryLimit"], cj["spec"]["failedJobsHistoryLimit"]) \
        == ("Allow", False, 3, 1)
    rc = get_json(kubectl, "rc", "legacy")
    assert rc["spec"]["selector"] == {"app": "legacy"}
    assert rc["metadata"]["labels"] == {"app": "legacy"}

    header, rows = header_and_rows(kubectl("get", "sts", "-o", "wide"))
    assert header == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert rows[0][:2] == ["web", "0/2"] and rows[0][3:] == ["nginx",
                                                            "registry.k8s.io/nginx-slim:0.24"]
    header, rows = header_and_rows(kubectl("get", "ds"))
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                      "NODE SELECTOR", "AGE"]
    assert rows[0][:7] == ["agent", "0", "0", "0", "0", "0", "kubernetes.io/os=linux"]
    header, rows = header_and_rows(kubectl("get", "jobs"))
    assert header == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[0][:3] == ["pi", "Running", "0/1"]
    header, rows = header_and_rows(kubectl("get", "cronjobs"))
    assert header == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    assert rows[0][:6] == ["hello", "*/5 * * * *", "Etc/UTC", "False", "0", "<none>"]
    header, rows = header_and_rows(kubectl("get", "rc", "-o", "wide"))
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES",
                      "SELECTOR"]
    assert rows[0][:4] == ["legacy", "2", "0", "0"] and rows[0][-1] == "app=legacy"
    header, rows = header_and_rows(kubectl("get", "leases"))
    assert header == ["NAME", "HOLDER", "AGE"] and rows[0][:2] == ["leader", "me"]
    every = kubectl("get", "all")
    for name in ("statefulset.apps/web", "daemonset.apps/agent", "job.batch/pi",
                 "cronjob.batch/hello", "replicationcontroller/legacy"):
        assert name in every
    for what in ("sts/web", "ds/agent", "job/pi", "cj/hello", "rc/legacy", "lease/leader"):
        assert "Name:" in kubectl("describe", what)


def test_job_selector_is_generated_from_its_uid(kubectl, tmp_path):
    apply(kubectl, tmp_path)
    job = get_json(kubectl, "job", "pi")
    uid = job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"]
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
        "controller-uid": uid, "job-name": "pi"}
    assert job["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"]
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["backoffLimit"],
            job["spec"]["completionMode"], job["spec"]["suspend"]) == (1, 1, 6, "NonIndexed",
                                                                     False)


def test_kubectl_create_job_and_cronjob(kubectl):
    assert kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *",
                   "--", "date") == "cronjob.batch/tick created\n"
    assert kubectl("create", "job", "once", "--image=busybox", "--", "echo", "hi") \
        == "job.batch/once created\n"
    kubectl("create", "job", "manual", "--from=cronjob/tick")
    manual = get_json(kubectl, "job", "manual")
    assert manual["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    owner = manual["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "tick", True)
    assert get_json(kubectl, "job", "once")["spec"]["template"]["spec"]["restartPolicy"] \
        == "Never"


def test_scale_status_and_generation(kubectl, tmp_path, client):
    apply(kubectl, tmp_path)
    assert kubectl("scale", "sts", "web", "--replicas=3") == "statefulset.apps/web scaled\n"
    assert kubectl("scale", "rc", "legacy", "--replicas=0") == \
        "replicationcontroller/legacy scaled\n"
    sts = get_json(kubectl, "sts", "web")
    assert sts["spec"]["replicas"] == 3 and sts["metadata"]["generation"] == 2
    scale = client.request("GET", path_for("statefulsets", "default", "web", "scale"))
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) \
        == ("Scale", 3, "app=nginx")
    assert get_json(kubectl, "rc", "legacy")["spec"]["replicas"] == 0
    client.patch("statefulsets", "web", {"status": {"replicas": 3, "readyReplicas": 2,
                                                    "availableReplicas": 2}},
                 "default", subresource="status")
    client.patch("statefulsets", "web", {"status": {"replicas": 0}}, "default")
    sts = get_json(kubectl, "sts", "web")
    assert sts["status"]["readyReplicas"] == 2 and sts["metadata"]["generation"] == 2
    assert kubectl("get", "sts", "web", "--no-headers").split()[1] == "2/3"


def test_server_side_apply_and_namespace_deletion(kubectl, tmp_path):
    kubectl("create", "namespace", "team")
    path = tmp_path / "m.yaml"
    path.write_text(MANIFESTS)
    kubectl("apply", "--server-side", "-n", "team", "-f", str(path))
    kubectl("create", "configmap", "cfg", "-n", "team", "--from-literal=a=b")
    path.write_text(MANIFESTS.replace("replicas: 2\n  selector: {matchLabels: {app: nginx}}",
                                      "replicas: 1\n  selector: {matchLabels: {app: nginx}}"))
    assert "statefulset.apps/web serverside-applied" in kubectl(
        "apply", "--server-side", "-n", "team", "-f", str(path))
    assert get_json(kubectl, "sts", "web", "-n", "team")["spec"]["replicas"] == 1
    kubectl("delete", "namespace", "team")
    for kind in ("sts", "ds", "jobs", "cj", "rc", "leases", "cm"):
        assert kubectl("get", kind, "-n", "team", "-o", "name") == ""


def test_delete_cascade_orphan_strips_the_owner_reference(kubectl, tmp_path, client):
    apply(kubectl, tmp_path)
    owner = get_json(kubectl, "sts", "web")
    ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True,
           "uid": owner["metadata"]["uid"]}
    client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "web-0", "ownerReferences": [ref]},
                           "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
                  "default")
    assert kubectl("delete", "sts", "web", "--cascade=orphan").startswith(
        'statefulset.apps "web" deleted')
    assert "ownerReferences" not in get_json(kubectl, "pod", "web-0")["metadata"]


def api_client(server) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(str(server.kubeconfig_path), client_configuration=configuration)
    return client.ApiClient(configuration)


def test_python_client_typed_crud_and_watch(api_server):
    api = api_client(api_server)
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    core, coordination = client.CoreV1Api(api), client.CoordinationV1Api(api)
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]))
    selector = client.V1LabelSelector(match_labels={"app": "py"})
    sts = apps.create_namespaced_stateful_set("default", client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1StatefulSetSpec(service_name="py", selector=selector, template=template)))
    assert sts.spec.replicas == 1 and sts.spec.pod_management_policy == "OrderedReady"
    apps.create_namespaced_daemon_set("default", client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1DaemonSetSpec(selector=selector, template=template)))
    core.create_namespaced_replication_controller("default", client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1ReplicationControllerSpec(template=template)))
    lease = coordination.create_namespaced_lease("default", client.V1Lease(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1LeaseSpec(holder_identity="node-a", lease_duration_seconds=40)))
    assert lease.spec.holder_identity == "node-a"
    job_template = client.V1PodTemplateSpec(spec=client.V1PodSpec(
        restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")]))
    rv = batch.list_namespaced_job("default").metadata.resource_version
    seen = []

    def consume():
        for event in watch.Watch().stream(batch.list_namespaced_job, "default",
                                          resource_version=rv, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                return
    consumer = threading.Thread(target=consume)
    consumer.start()
    job = batch.create_namespaced_job("default", client.V1Job(
        metadata=client.V1ObjectMeta(name="py"), spec=client.V1JobSpec(template=job_template)))
    assert job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"]
    batch.patch_namespaced_job("py", "default", {"metadata": {"labels": {"x": "y"}}})
    batch.delete_namespaced_job("py", "default")
    consumer.join(15)
    assert seen == [("ADDED", "py"), ("MODIFIED", "py"), ("DELETED", "py")]
    cronjob = batch.create_namespaced_cron_job("default", client.V1CronJob(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1CronJobSpec(schedule="@hourly", job_template=client.V1JobTemplateSpec(
            spec=client.V1JobSpec(template=job_template)))))
    assert cronjob.spec.concurrency_policy == "Allow"
    assert [s.metadata.name for s in apps.list_namespaced_stateful_set("default").items] == ["py"]
    assert apps.read_namespaced_daemon_set("py", "default").spec.update_strategy.type \
        == "RollingUpdate"
    assert core.read_namespaced_replication_controller("py", "default").spec.selector \
        == {"app": "py"}
    apps.patch_namespaced_stateful_set_scale("py", "default", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_stateful_set("py", "default").spec.replicas == 4
    for delete in (apps.delete_namespaced_stateful_set, apps.delete_namespaced_daemon_set,
                   core.delete_namespaced_replication_controller,
                   coordination.delete_namespaced_lease, batch.delete_namespaced_cron_job):
        delete("py", "default")


def test_create_from_yaml_multi_document_and_list(api_server, tmp_path):
    api = api_client(api_server)
    path = tmp_path / "multi.yaml"
    path.write_text(MANIFESTS)
    utils.create_from_yaml(api, str(path))
    listed = tmp_path / "list.yaml"
    listed.write_text("apiVersion: v1\nkind: List\nitems:\n"
                      "- {apiVersion: v1, kind: ConfigMap, metadata: {name: one}, "
                      "data: {a: b}}\n"
                      "- {apiVersion: v1, kind: Secret, metadata: {name: two}, "
                      "stringData: {c: d}}\n")
    utils.create_from_yaml(api, str(listed))
    batch = client.BatchV1Api(api)
    assert [j.metadata.name for j in batch.list_namespaced_job("default").items] == ["pi"]
    assert client.CoreV1Api(api).read_namespaced_secret("two", "default").data == {"c": "ZA=="}

"""Bad input for the kinds of issue 16, through the real kubectl: 422 with the field path and
Kubernetes' message (400 where the apiserver's decoder refuses the body), nothing stored."""

from __future__ import annotations

import base64

import pytest

CONFIG_KEY = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
              "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
              "regex used for validation is '[-._a-zA-Z0-9]+')")
DNS_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
             "or '-', and must start and end with an alphanumeric character")
B64 = base64.b64encode(b"x").decode()


def indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.strip("\n").splitlines())


def cm(body: str, name: str = "bad") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n{body}\n"


def secret(body: str, name: str = "bad", annotations: str = "") -> str:
    meta = f"{{name: {name}{', annotations: ' + annotations if annotations else ''}}}"
    return f"apiVersion: v1\nkind: Secret\nmetadata: {meta}\n{body}\n"


CONTAINER = "containers: [{name: c, image: busybox}]"


def pod(spec: str, name: str = "bad") -> str:
    return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{indent(spec, 2)}"


def sts(spec: str = "", name: str = "web", labels: str = "{app: web}",
        selector: str = "{app: web}", pod_spec: str = CONTAINER) -> str:
    return (f"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}}}\nspec:\n"
            f"  serviceName: nginx\n  selector: {{matchLabels: {selector}}}\n{indent(spec, 2)}"
            f"  template:\n    metadata: {{labels: {labels}}}\n    spec:\n"
            f"{indent(pod_spec, 6)}")


def ds(spec: str = "", pod_spec: str = CONTAINER) -> str:
    return ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n"
            f"  selector: {{matchLabels: {{app: agent}}}}\n{indent(spec, 2)}"
            "  template:\n    metadata: {labels: {app: agent}}\n    spec:\n"
            f"{indent(pod_spec, 6)}")


def job(spec: str = "", restart: str = "Never", pod_spec: str = CONTAINER) -> str:
    return ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n"
            f"{indent(spec, 2)}  template:\n    spec:\n      restartPolicy: {restart}\n"
            f"{indent(pod_spec, 6)}")


def cronjob(spec: str) -> str:
    return ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: hello}\nspec:\n"
            f"{indent(spec, 2)}  jobTemplate:\n    spec:\n      template:\n        spec:\n"
            f"          restartPolicy: OnFailure\n{indent(CONTAINER, 10)}")


def rc(spec: str, labels: str = "{app: rc}") -> str:
    return ("apiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc}\nspec:\n"
            f"{indent(spec, 2)}  template:\n    metadata: {{labels: {labels}}}\n    spec:\n"
            f"{indent(CONTAINER, 6)}")


MOUNT = "  volumeMounts: [{name: config, mountPath: /etc/app}]"
CASES = [
    # ConfigMaps
    ("cm-key-in-data-and-binarydata", cm(f"data: {{a: x}}\nbinaryData: {{a: {B64}}}"),
     'data[a]: Invalid value: "a": duplicate of key present in binaryData'),
    ("cm-key-with-space", cm("data: {'bad key': x}"),
     f'data[bad key]: Invalid value: "bad key": {CONFIG_KEY}'),
    ("cm-key-dotdot", cm("data: {'..data': x}"),
     "data[..data]: Invalid value: \"..data\": must not start with '..'"),
    ("cm-binarydata-key", cm(f"binaryData: {{'a/b': {B64}}}"),
     f'binaryData[a/b]: Invalid value: "a/b": {CONFIG_KEY}'),
    ("cm-bad-name", cm("data: {a: b}", name="Bad_Name"),
     'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'),
    # Secrets
    ("secret-tls-without-key", secret(f"type: kubernetes.io/tls\ndata: {{tls.crt: {B64}}}"),
     "data[tls.key]: Required value"),
    ("secret-tls-without-both", secret("type: kubernetes.io/tls\nstringData: {other: x}"),
     "* data[tls.crt]: Required value\n* data[tls.key]: Required value"),
    ("secret-bad-key", secret("stringData: {'pass word': x}"),
     f'data[pass word]: Invalid value: "pass word": {CONFIG_KEY}'),
    ("secret-sa-token-without-account",
     secret("type: kubernetes.io/service-account-token"),
     "metadata.annotations[kubernetes.io/service-account.name]: Required value"),
    ("secret-basic-auth-empty", secret("type: kubernetes.io/basic-auth"),
     "* data[username]: Required value\n* data[password]: Required value"),
    # StatefulSets
    ("sts-selector-mismatch", sts(labels="{app: other}"),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
     "`selector` does not match template `labels`"),
    ("sts-bad-service-name", sts().replace("serviceName: nginx", "serviceName: Nginx_Svc"),
     f'spec.serviceName: Invalid value: "Nginx_Svc": {DNS_LABEL}'),
    ("sts-pod-management", sts("podManagementPolicy: Random"),
     "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or "
     "'Parallel'"),
    ("sts-negative-partition",
     sts("updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: -1}}"),
     "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: "
     "must be greater than or equal to 0"),
    ("sts-negative-replicas", sts("replicas: -2"),
     "spec.replicas: Invalid value: -2: must be greater than or equal to 0"),
    ("sts-dotted-name", sts(name="web.v1"),
     f'metadata.name: Invalid value: "web.v1": {DNS_LABEL}'),
    ("sts-restart-never", sts(pod_spec=f"restartPolicy: Never\n{CONTAINER}"),
     'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'),
    # DaemonSets
    ("ds-restart-onfailure", ds(pod_spec=f"restartPolicy: OnFailure\n{CONTAINER}"),
     'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": '
     'supported values: "Always"'),
    ("ds-surge-and-unavailable",
     ds("updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}"),
     "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: "
     "may not be set when maxUnavailable is non-zero"),
    ("ds-bad-strategy", ds("updateStrategy: {type: Rolling}"),
     'spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Rolling", '
     'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: '
     '"RollingUpdate", "OnDelete"'),
    ("ds-undeclared-volume", ds(pod_spec=f"containers:\n- name: c\n  image: busybox\n{MOUNT}"),
     'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "config"'),
    # Jobs
    ("job-negative-completions", job("completions: -1"),
     "spec.completions: Invalid value: -1: must be greater than or equal to 0"),
    ("job-negative-parallelism", job("parallelism: -3"),
     "spec.parallelism: Invalid value: -3: must be greater than or equal to 0"),
    ("job-negative-backoff", job("backoffLimit: -1"),
     "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"),
    ("job-restart-always", job(restart="Always"),
     'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'),
    ("job-indexed-without-completions", job("completionMode: Indexed\nparallelism: 2"),
     "spec.completions: Required value: when completion mode is Indexed"),
    ("job-completion-mode", job("completionMode: Sometimes"),
     'spec.completionMode: Unsupported value: "Sometimes": supported values: '
     '"NonIndexed", "Indexed"'),
    ("job-foreign-selector", job("manualSelector: false\nselector: {matchLabels: {app: x}}"),
     "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"),
    # CronJobs
    ("cronjob-schedule-words", cronjob("schedule: every minute"),
     'spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: '
     "[every minute]"),
    ("cronjob-minute-61", cronjob("schedule: '61 * * * *'"),
     'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'),
    ("cronjob-tz-in-schedule", cronjob("schedule: 'TZ=UTC 0 * * * *'"),
     'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in '
     "schedule, use timeZone field instead"),
    ("cronjob-time-zone", cronjob("schedule: '@hourly'\ntimeZone: Mars/Olympus"),
     'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
    ("cronjob-concurrency", cronjob("schedule: '@daily'\nconcurrencyPolicy: Sometimes"),
     'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", '
     '"Forbid", "Replace"'),
    # ReplicationControllers, Leases, ControllerRevisions
    ("rc-selector-mismatch", rc("selector: {app: web}"),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"rc"}: '
     "`selector` does not match template `labels`"),
    ("rc-negative-replicas", rc("replicas: -1"),
     "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("lease-duration", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: l}\n"
     "spec: {holderIdentity: me, leaseDurationSeconds: 0}\n",
     "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
    ("controllerrevision-without-data",
     "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata: {name: r}\nrevision: 1\n",
     "data: Required value: data is mandatory"),
    # Pod volumes and env (the same checks run on every pod template)
    ("pod-undeclared-volume", pod(f"containers:\n- name: c\n  image: busybox\n{MOUNT}"),
     'spec.containers[0].volumeMounts[0].name: Not found: "config"'),
    ("pod-duplicate-volume-names",
     pod(f"volumes: [{{name: data, emptyDir: {{}}}}, {{name: data, emptyDir: {{}}}}]\n"
         f"{CONTAINER}"),
     'spec.volumes[1].name: Duplicate value: "data"'),
    ("pod-configmap-volume-without-name",
     pod(f"volumes: [{{name: config, configMap: {{}}}}]\n{CONTAINER}"),
     "spec.volumes[0].configMap.name: Required value"),
    ("pod-secret-volume-without-secretname",
     pod(f"volumes: [{{name: creds, secret: {{}}}}]\n{CONTAINER}"),
     "spec.volumes[0].secret.secretName: Required value"),
    ("pod-two-volume-types",
     pod(f"volumes: [{{name: v, emptyDir: {{}}, secret: {{secretName: s}}}}]\n{CONTAINER}"),
     "spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type"),
    ("pod-volume-path-escapes",
     pod(f"volumes: [{{name: v, configMap: {{name: c, items: [{{key: k, path: ../x}}]}}}}]\n"
         f"{CONTAINER}"),
     "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'"),
    ("pod-env-two-sources",
     pod("containers:\n- name: c\n  image: busybox\n  env:\n  - name: A\n    valueFrom:\n"
         "      configMapKeyRef: {name: c, key: k}\n      secretKeyRef: {name: s, key: k}"),
     'spec.containers[0].env[0].valueFrom: Invalid value: "": '
     "may not have more than one field specified at a time"),
    ("pod-env-value-and-valuefrom",
     pod("containers:\n- name: c\n  image: busybox\n  env:\n  - name: A\n    value: x\n"
         "    valueFrom: {fieldRef: {fieldPath: metadata.name}}"),
     'spec.containers[0].env[0].valueFrom: Invalid value: "": '
     "may not be specified when `value` is not empty"),
    ("pod-env-fieldref-phase",
     pod("containers:\n- name: c\n  image: busybox\n  env:\n  - name: A\n"
         "    valueFrom: {fieldRef: {fieldPath: status.phase}}"),
     'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: '
     '"status.phase": supported values: "metadata.name", "metadata.namespace", '
     '"metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", '
     '"status.hostIPs", "status.podIP", "status.podIPs"'),
    ("pod-envfrom-without-source",
     pod("containers:\n- name: c\n  image: busybox\n  envFrom: [{prefix: X_}]"),
     'spec.containers[0].envFrom: Invalid value: "": '
     "must specify one of: `configMapRef` or `secretRef`"),
    ("pod-env-key-ref-without-key",
     pod("containers:\n- name: c\n  image: busybox\n  env:\n  - name: A\n"
         "    valueFrom: {secretKeyRef: {name: s}}"),
     "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value"),
]


def _rv(server) -> int:
    return server.store.resource_version


@pytest.mark.parametrize("case, manifest, message", CASES, ids=[c[0] for c in CASES])
def test_invalid_object_is_422_with_the_field_and_stores_nothing(shared_server, shared_kubectl,
                                                                 tmp_path, case, manifest,
                                                                 message):
    path = tmp_path / f"{case}.yaml"
    path.write_text(manifest)
    before = _rv(shared_server)
    proc = shared_kubectl.run("-v=6", "apply", "-f", str(path))
    assert proc.returncode == 1, proc.stdout
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    assert message in proc.stderr
    assert "is invalid" in proc.stderr
    assert _rv(shared_server) == before, "a rejected request stored something"


def test_there_are_at_least_twenty_new_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("kind, manifest, byte", [
    ("Secret", secret("data: {password: 'not base64!'}"), 3),
    ("Secret", secret("data: {password: 'abc'}"), 0),
    ("ConfigMap", cm("binaryData: {blob: 'aGVsbG8=x'}"), 8),
])
def test_non_base64_bytes_are_400_as_the_decoder_answers(shared_server, shared_kubectl,
                                                         tmp_path, kind, manifest, byte):
    path = tmp_path / "b64.yaml"
    path.write_text(manifest)
    before = _rv(shared_server)
    proc = shared_kubectl.run("-v=6", "create", "-f", str(path))
    assert proc.returncode == 1
    assert 'status="400 Bad Request"' in proc.stderr
    assert (f'Error from server (BadRequest): error when creating "{path}": {kind} in version '
            f'"v1" cannot be handled as a {kind}: illegal base64 data at input byte {byte}'
            in proc.stderr)
    assert _rv(shared_server) == before


def test_a_number_in_configmap_data_is_400(shared_server, shared_kubectl, tmp_path):
    path = tmp_path / "port.yaml"
    path.write_text(cm("data: {port: 8080}", name="port"))
    before = _rv(shared_server)
    proc = shared_kubectl.run("apply", "-f", str(path))
    assert proc.returncode == 1
    assert ('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
            "number into Go struct field ConfigMap.data of type string") in proc.stderr
    assert _rv(shared_server) == before


def test_create_f_answers_as_apply_does(shared_server, shared_kubectl, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(job(restart="Always"))
    proc = shared_kubectl.run("create", "-f", str(path))
    assert proc.returncode == 1
    assert ('The Job "pi" is invalid: spec.template.spec.restartPolicy: Required value: '
            'valid values: "OnFailure", "Never"') in proc.stderr


UPDATES = [
    ("immutable-configmap",
     cm("immutable: true\ndata: {a: b}", name="frozen"),
     ["patch", "cm", "frozen", "--type=merge", "-p", '{"data":{"a":"c"}}'],
     "data: Forbidden: field is immutable when `immutable` is set"),
    ("immutable-flag",
     cm("immutable: true\ndata: {a: b}", name="frozen2"),
     ["patch", "cm", "frozen2", "--type=merge", "-p", '{"immutable":false}'],
     "immutable: Forbidden: field is immutable when `immutable` is set"),
    ("secret-type",
     secret("stringData: {a: b}", name="typed"),
     ["patch", "secret", "typed", "--type=merge", "-p", '{"type":"kubernetes.io/basic-auth"}'],
     'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'),
    ("sts-service-name",
     sts(name="frozen"),
     ["patch", "sts", "frozen", "--type=merge", "-p", '{"spec":{"serviceName":"other"}}'],
     "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', "
     "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
     "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
    ("job-template",
     job().replace("name: pi", "name: frozen"),
     ["patch", "job", "frozen", "--type=json", "-p",
      '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx"}]'],
     "spec.template: Invalid value: "),
    ("ds-selector",
     ds().replace("name: agent", "name: frozen"),
     ["patch", "ds", "frozen", "--type=merge", "-p",
      '{"spec":{"selector":{"matchLabels":{"app":"x"}},'
      '"template":{"metadata":{"labels":{"app":"x"}}}}}'],
     "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string"
     '{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable'),
]


@pytest.mark.parametrize("case, manifest, change, message", UPDATES, ids=[u[0] for u in UPDATES])
def test_forbidden_update_is_422_and_changes_nothing(shared_server, shared_kubectl, tmp_path,
                                                     case, manifest, change, message):
    path = tmp_path / f"{case}.yaml"
    path.write_text(manifest)
    shared_kubectl("apply", "-f", str(path))
    before = _rv(shared_server)
    proc = shared_kubectl.run("-v=6", *change)
    assert proc.returncode == 1
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    assert message in proc.stderr
    assert _rv(shared_server) == before

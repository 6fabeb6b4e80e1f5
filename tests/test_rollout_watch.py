"""While helm --wait runs, kaudit says what is stuck within seconds (issue: stuck rollouts).

The objects are in the shapes the API server reports for each state (core/v1 field names,
the scheduler's and kubelet's reasons and messages); the helm double spends
HELM_DOUBLE_WAIT seconds in its --wait, the kubectl double answers `get` and `logs` from
the pretend cluster's objects.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from kaudit.core.rollout import diagnose
from kaudit.core.errors import KauditError
from kaudit.engine.phases import collector, stack
from kaudit.engine.workflow import Status
from cluster_doubles import Cluster, out

NS = "kaudit"


def pvc(name, *, storage_class=None, phase="Pending"):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "volumeMode": "Filesystem"}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": "loki"}},
        "spec": spec, "status": {"phase": phase},
    }


def pod(name, *, waiting=None, restarts=0, unschedulable=None, image="docker.io/grafana/loki:3.7.6", container="loki"):
    status = {"phase": "Pending", "qosClass": "BestEffort"}
    if waiting:
        reason, message = waiting
        status["containerStatuses"] = [{
            "name": container, "image": image, "imageID": "", "ready": False, "restartCount": restarts, "started": False,
            "state": {"waiting": {"reason": reason, "message": message}},
        }]
        status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
    if unschedulable:
        status["conditions"] = [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable,
            "lastProbeTime": None, "lastTransitionTime": "2026-12-03T06:50:00Z",
        }]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": container, "image": image}]}, "status": status,
    }


def storage_class(name, *, default=False):
    ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name, "annotations": ann},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}


def as_list(*items):
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


TAINT_MSG = ("0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. "
             "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
PULL_MSG = ('rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/grafana/loki:9.9.9": '
            'failed to resolve reference "docker.io/grafana/loki:9.9.9": docker.io/grafana/loki:9.9.9: not found')


# -- the pure diagnosis ----------------------------------------------------------------


def test_pending_claim_without_any_storage_class_is_named_with_the_way_out():
    [f] = diagnose(as_list(pvc("storage-loki-0")), as_list())
    assert f.message.startswith("pvc/storage-loki-0 is Pending: it names no StorageClass and the cluster has no default one")
    assert "without --loki-size/--loki-storage-class" in f.hint and "local-path-provisioner" in f.hint


def test_claim_served_by_a_default_class_or_bound_is_not_a_problem():
    assert diagnose(as_list(pvc("a"), pvc("b", phase="Bound")), as_list(storage_class("local-path", default=True))) == []
    assert diagnose(as_list(pvc("c", storage_class="local-path")), as_list(storage_class("local-path"))) == []


def test_claim_naming_a_class_that_does_not_exist():
    [f] = diagnose(as_list(pvc("data", storage_class="fast-ssd")), as_list(storage_class("standard", default=True)),
                   kubectl_opts=" --kubeconfig /k")
    assert f.message == "pvc/data is Pending: StorageClass fast-ssd does not exist"
    assert "kubectl get storageclass --kubeconfig /k" in f.hint


def test_image_pull_failure_names_the_image_and_the_registry_error():
    [f] = diagnose(as_list(pod("loki-0", waiting=("ImagePullBackOff", PULL_MSG), image="docker.io/grafana/loki:9.9.9")), None)
    assert f.message.startswith("pod/loki-0: image docker.io/grafana/loki:9.9.9 cannot be pulled (ImagePullBackOff: rpc error")
    assert "kubectl -n kaudit describe pod loki-0" in f.hint


def test_crash_loop_asks_for_the_previous_log():
    [f] = diagnose(as_list(pod("loki-0", waiting=("CrashLoopBackOff", "back-off 40s restarting failed container=loki"), restarts=4)), None)
    assert f.message == "pod/loki-0: container loki is crash-looping (4 restarts)"
    assert f.logs_of == ("kaudit", "loki-0", "loki")


def test_unschedulable_because_of_a_taint_suggests_removing_it():
    [f] = diagnose(as_list(pod("grafana-7d9c", unschedulable=TAINT_MSG)), None)
    assert f.message.startswith("pod/grafana-7d9c cannot be scheduled: 0/1 nodes are available: 1 node(s) had untolerated taint")
    assert "kubectl taint nodes --all node-role.kubernetes.io/control-plane-" in f.hint
    [g] = diagnose(as_list(pod("p", unschedulable="0/1 nodes are available: 1 Insufficient memory.")), None)
    assert "Insufficient memory" in g.message and "describe pod p" in g.hint


def test_a_healthy_namespace_has_no_findings():
    running = pod("loki-0")
    running["status"] = {"phase": "Running", "containerStatuses": [{"name": "loki", "restartCount": 0, "state": {"running": {}}}]}
    assert diagnose(as_list(running, pvc("x", phase="Bound")), as_list()) == []
    assert diagnose(None, None) == []


# -- while helm waits ------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path):
    return Cluster.make(tmp_path)


def seed(cluster, *objects, logs=None):
    kube = cluster.root / "kube"
    kube.mkdir(exist_ok=True)
    path = kube / "objects.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    for o in objects:
        ns = "" if o["kind"] == "StorageClass" else o["metadata"]["namespace"]
        state[f"{o['kind']}/{ns}/{o['metadata']['name']}"] = o
    path.write_text(json.dumps(state))
    for (pod_name, container), text in (logs or {}).items():
        d = kube / "logs" / NS / pod_name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{container}.log").write_text(text)


def lines(ctx):
    return out(ctx).splitlines()


def test_stuck_claim_is_reported_while_helm_still_waits(cluster):
    seed(cluster, pvc("storage-loki-0"))
    ctx = cluster.context(SimpleNamespace(stack="loki", watch_interval=0.2), HELM_DOUBLE_WAIT="3")
    start = time.monotonic()
    assert stack.run(ctx).status is Status.CHANGED
    assert time.monotonic() - start < 15
    text = lines(ctx)
    began = next(i for i, x in enumerate(text) if x.startswith("... loki: installing loki-18.11.0"))
    ended = next(i for i, x in enumerate(text) if x.startswith("✓ loki: installing loki-18.11.0"))
    warned = [i for i, x in enumerate(text) if x.startswith("warning: pvc/storage-loki-0 is Pending")]
    assert len(warned) == 1, "each finding is said once, however often the watch looks"
    assert began < warned[0] < ended, "said while helm was still waiting, not after"
    gets = [c["argv"] for c in cluster.kubectl_calls() if "get" in c["argv"]]
    assert ["-n", "kaudit", "get", "pods,pvc", "-o", "json"] == gets[0][-6:]
    assert any(a[-3:] == ["get", "storageclass", "-o"] or a[-4:] == ["get", "storageclass", "-o", "json"] for a in gets)


def test_a_failed_install_names_what_was_stuck(cluster):
    seed(cluster, pod("loki-0", waiting=("ImagePullBackOff", PULL_MSG), image="docker.io/grafana/loki:9.9.9"))
    ctx = cluster.context(SimpleNamespace(stack="loki", watch_interval=0.2), HELM_DOUBLE_FAIL="loki", HELM_DOUBLE_WAIT="1")
    with pytest.raises(KauditError) as e:
        stack.run(ctx)
    assert "Error: INSTALLATION FAILED: context deadline exceeded; pod/loki-0: image docker.io/grafana/loki:9.9.9 cannot be pulled" in e.value.message
    assert e.value.hint.startswith("check that the node reaches the registry")


def test_failure_between_two_looks_is_still_explained(cluster):
    # helm fails at once: the last look after it ends still finds the cause
    seed(cluster, pod("grafana-5c", unschedulable=TAINT_MSG))
    ctx = cluster.context(SimpleNamespace(stack="loki", watch_interval=60), HELM_DOUBLE_FAIL="loki")
    with pytest.raises(KauditError) as e:
        stack.run(ctx)
    assert "pod/grafana-5c cannot be scheduled" in e.value.message
    assert "control-plane-" in e.value.hint


def test_crash_loop_is_reported_with_the_last_log_lines(cluster):
    log = "\n".join([f"level=info msg=\"line {i}\"" for i in range(8)] + [
        'level=error msg="error initialising module: store" err="mkdir /var/loki/chunks: read-only file system"'])
    seed(cluster, pod("promtail-x7", container="promtail", waiting=("CrashLoopBackOff", "back-off 20s"), restarts=3),
         logs={("promtail-x7", "promtail"): log})
    ctx = cluster.context(SimpleNamespace(collector="promtail", watch_interval=0.2), HELM_DOUBLE_WAIT="1.5")
    collector.run(ctx)
    text = out(ctx)
    assert "warning: pod/promtail-x7: container promtail is crash-looping (3 restarts); last log lines:" in text
    assert "read-only file system" in text and 'msg="line 3"' not in text, "only the last five lines"
    assert "logs promtail-x7 -c promtail --previous" in text


def test_watch_problems_never_break_the_install(cluster):
    # the API refuses the watch's reads (as kubectl reports a refused connection): the install
    # still completes, and nothing is reported
    seed(cluster, pvc("storage-loki-0"))
    ctx = cluster.context(SimpleNamespace(stack="loki-stack", watch_interval=0.1), HELM_DOUBLE_WAIT="0.5", KUBECTL_DOUBLE_GET_REFUSED="1")
    assert stack.run(ctx).status is Status.CHANGED
    assert "warning: pvc" not in out(ctx)
    assert any("get" in c["argv"] for c in cluster.kubectl_calls()), "the watch did look"

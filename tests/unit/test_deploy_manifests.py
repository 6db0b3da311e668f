"""deploy/k8s: every kustomization renders, every object validates against the Kubernetes
schemas, and the objects say what docs/deploy.md promises (probes, drain, autoscaling, GPU).

Rendering uses ``kubectl kustomize`` (or ``kustomize build``) when installed, else the strict
subset in tests/kustomize_lite.py; where kubectl is present both are compared. Validation uses
the schemas the ``kubernetes-validate`` package ships (no network), strict mode (unknown fields
are errors), for every Kubernetes minor version from MIN_KUBERNETES to the newest it ships.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor
from packaging.version import Version

from bridge import cli
from bridge.config import Settings
from tests.support.k8s_manifests import (
    K8S,
    REPO,
    Obj,
    container,
    container_port,
    env_value,
    find,
    kustomize_command,
    pod_spec,
    render_dir,
    render_with_tool,
    rendered,
    workloads,
)
from tests.support.kustomize_lite import MERGE_KEYS, render
from web.cli import COMMAND_MODULES
from web.commands import worker as worker_command

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

BASE = K8S / "base"
#: Every kustomization in deploy/k8s; examples/my-site is the site overlay docs/deploy.md starts from.
OVERLAYS = ("base", "overlays/gpu", "overlays/small-install", "examples/my-site")
#: Oldest Kubernetes minor the manifests are checked against (docs/deploy.md, "Requirements").
MIN_KUBERNETES = "1.29"
#: The takeover target of a failed or drained worker's meeting (issue 14, "Failover").
TAKEOVER_TARGET_S = 15
PARTICIPANTS_METRIC = "microcue_worker_participants"


def kubernetes_versions() -> list[str]:
    found = sorted({major_minor(v) for v in all_versions()}, key=Version)
    return [v for v in found if Version(v) >= Version(MIN_KUBERNETES)]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def secret_example_keys() -> set[str]:
    lines = (BASE / "secrets.env.example").read_text(encoding="utf-8").splitlines()
    return {line.split("=", 1)[0] for line in lines if line.strip() and not line.lstrip().startswith("#")}


# --- render and validate ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", kubernetes_versions())
def test_every_object_validates_against_the_kubernetes_schema(overlay: str, version: str) -> None:
    objects = rendered(overlay)
    assert objects, f"{overlay} rendered nothing"
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{overlay}: {obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                f"{exc.message} at {'.'.join(map(str, exc.absolute_path))}"
            )


def test_validation_rejects_a_broken_object() -> None:
    """The validator is not a no-op: a misspelt field and a wrong type are caught."""
    web = find(rendered("base"), "Deployment", "microcue-web")
    typo = {**web, "spec": {**web["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, MIN_KUBERNETES, strict=True)
    wrong = {**web, "spec": {**web["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, MIN_KUBERNETES, strict=True)


def _normalised(objects: list[Obj]) -> list[Obj]:
    """Merge-keyed lists sorted: a patch may reorder env entries, which changes nothing."""

    def norm(value: Any, field: str = "") -> Any:
        if isinstance(value, dict):
            return {k: norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            items = [norm(v, field) for v in value]
            if field in MERGE_KEYS and all(isinstance(i, dict) for i in items):
                items.sort(key=lambda i: str(i.get(MERGE_KEYS[field])))
            return items
        return value

    return sorted((norm(o) for o in objects), key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_fallback_renderer_matches_kustomize(overlay: str) -> None:
    """tests/kustomize_lite.py is what renders on machines without kubectl: it must agree."""
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl installed: nothing to compare the fallback with")
    assert _normalised(render(K8S / overlay)) == _normalised(render_with_tool(K8S / overlay))


# --- references between objects -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    objects = rendered(overlay)
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    secret_keys = secret_example_keys()
    pods = [(w, pod_spec(w), w["spec"]["template"]["metadata"]["labels"]) for w in workloads(objects)]
    for workload, spec, labels in pods:
        assert selects(workload["spec"]["selector"]["matchLabels"], labels)
        for c in spec["containers"] + spec.get("initContainers", []):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    # The Secret is made from secrets.env.example (docs/deploy.md, "Secrets").
                    assert ref["name"] == "microcue-secrets"
                    assert ref["key"] in secret_keys, f"{ref['key']} missing from base/secrets.env.example"
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
    for service in (o for o in objects if o["kind"] == "Service"):
        targets = [(w, labels) for w, _, labels in pods if selects(service["spec"]["selector"], labels)]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)} workloads"
        workload = targets[0][0]
        for port in service["spec"]["ports"]:
            assert any(container_port(c, port["targetPort"]) for c in pod_spec(workload)["containers"])
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        assert sum(selects(pdb["spec"]["selector"]["matchLabels"], labels) for _, _, labels in pods) == 1
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        find(objects, target["kind"], target["name"])
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = find(objects, "Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


# --- the two roles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "port"),
    [("web", ["serve", "--role", "web"], 8080), ("worker", ["worker"], 8081)],
)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_role_deployment_probes_and_port(overlay: str, name: str, args: list[str], port: int) -> None:
    deployment = find(rendered(overlay), "Deployment", f"microcue-{name}")
    c = container(deployment, name)
    assert c["args"] == args
    assert int(env_value(c, "MICROCUE_PORT")) == port
    assert container_port(c, "http") == port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container_port(c, c[probe]["httpGet"]["port"]) == port, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name} has no {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_shutdown_leaves_time_to_drain(overlay: str) -> None:
    """SIGTERM comes after preStop; the grace period must still hold a whole takeover."""
    worker = find(rendered(overlay), "Deployment", "microcue-worker")
    pre_stop = container(worker, "worker")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + 3 * TAKEOVER_TARGET_S
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_web_runs_migrations_before_serving() -> None:
    web = find(rendered("base"), "Deployment", "microcue-web")
    (init,) = pod_spec(web)["initContainers"]
    assert init["args"] == ["db", "upgrade"]
    assert init["image"] == container(web, "web")["image"]


def _cli_accepts(args: list[str]) -> bool:

    try:
        cli.build_parser(COMMAND_MODULES).parse_args(args)
    except SystemExit:
        return False
    return True


def test_migration_command_exists_in_the_cli() -> None:
    assert _cli_accepts(["db", "upgrade"])


@pytest.mark.parametrize("args", [["serve", "--role", "web"], ["worker"]])
def test_role_commands_exist_in_the_cli(args: list[str]) -> None:
    assert _cli_accepts(args)


# --- autoscaling and disruption -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_autoscaler_uses_cpu_and_participants(overlay: str) -> None:
    objects = rendered(overlay)
    hpa = find(objects, "HorizontalPodAutoscaler", "microcue-worker")
    by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    pods_metric = by_type["Pods"]["pods"]
    assert pods_metric["metric"]["name"] == PARTICIPANTS_METRIC
    capacity = int(
        env_value(container(find(objects, "Deployment", "microcue-worker"), "worker"), "MICROCUE_WORKER_CAPACITY")
    )
    target = int(pods_metric["target"]["averageValue"])
    assert 0 < target < capacity, "scale out before the workers are full, or new meetings find no room"
    # Scaling down moves meetings: slower than scaling up.
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > behavior["scaleUp"]["stabilizationWindowSeconds"]


def test_disruption_budgets() -> None:
    objects = rendered("base")
    assert find(objects, "PodDisruptionBudget", "microcue-worker")["spec"]["maxUnavailable"] == 1
    assert find(objects, "PodDisruptionBudget", "microcue-web")["spec"]["minAvailable"] >= 1


def test_ingress_keeps_websockets_open() -> None:
    ingress = find(rendered("base"), "Ingress", "microcue")
    annotations = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{name}"]) >= 3600


def test_adapter_rule_in_the_docs_exposes_the_metric() -> None:
    """docs/deploy.md's prometheus-adapter rule must serve the name the HPA asks for."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(rules:\n.*?)```", text, re.S)
    assert block, "docs/deploy.md has no prometheus-adapter `rules:` block"
    rules = yaml.safe_load(block.group(1))["rules"]
    (rule,) = [r for r in rules if PARTICIPANTS_METRIC in r["seriesQuery"]]
    assert rule["resources"]["overrides"]["pod"]["resource"] == "pod"
    assert rule["name"].get("as", PARTICIPANTS_METRIC) == PARTICIPANTS_METRIC


# --- overlays -----------------------------------------------------------------------------


def test_gpu_overlay_puts_workers_on_gpu_nodes() -> None:
    objects = rendered("overlays/gpu")
    worker = find(objects, "Deployment", "microcue-worker")
    spec = pod_spec(worker)
    assert container(worker, "worker")["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    assert container(worker, "worker")["image"].endswith("-gpu")
    web = find(objects, "Deployment", "microcue-web")
    assert "nvidia.com/gpu" not in container(web, "web")["resources"]["limits"]
    assert not container(web, "web")["image"].endswith("-gpu")
    base_worker = find(rendered("base"), "Deployment", "microcue-worker")
    assert "nvidia.com/gpu" not in container(base_worker, "worker")["resources"]["limits"]


def test_small_install_brings_broker_and_database_with_volumes() -> None:
    objects = rendered("overlays/small-install")
    config = find(objects, "ConfigMap", "microcue-config")["data"]
    for name, url, port_name in (
        ("mosquitto", config["MICROCUE_MQTT_URL"], "mqtt"),
        ("postgres", _example_database_url(), "postgres"),
    ):
        stateful = find(objects, "StatefulSet", name)
        assert stateful["spec"]["volumeClaimTemplates"], f"{name} keeps no data"
        service = find(objects, "Service", name)
        parsed = urlsplit(url)
        assert parsed.hostname == name, f"the settings point at {parsed.hostname}, the Service is {name}"
        assert parsed.port == next(p["port"] for p in service["spec"]["ports"] if p["name"] == port_name)
    postgres = container(find(objects, "StatefulSet", "postgres"), "postgres")
    password = next(e for e in postgres["env"] if e["name"] == "POSTGRES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["key"] == "POSTGRES_PASSWORD"
    conf = find(objects, "ConfigMap", "mosquitto-config")["data"]["mosquitto.conf"]
    assert "listener 1883" in conf
    assert not [o for o in rendered("base") if o["kind"] == "StatefulSet"], "the base brings no stateful services"


def _example_database_url() -> str:
    for line in (BASE / "secrets.env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("MICROCUE_DATABASE_URL="):
            return line.split("=", 1)[1]
    raise AssertionError("MICROCUE_DATABASE_URL missing from secrets.env.example")


def test_secret_example_matches_settings() -> None:
    """Every MICROCUE_* key in the example is a real setting (a typo would be ignored silently)."""

    known = {f"MICROCUE_{name.upper()}" for name in Settings.model_fields}
    keys = secret_example_keys()
    assert {k for k in keys if k.startswith("MICROCUE_")} <= known
    config = find(rendered("base"), "ConfigMap", "microcue-config")["data"]
    assert set(config) <= known


def test_every_kustomization_is_tested() -> None:
    found = {str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml")}
    assert found == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_public_url_is_the_ingress_host(overlay: str) -> None:
    """Links in reports and invitations (MICROCUE_PUBLIC_URL) must lead to the Ingress."""
    objects = rendered(overlay)
    public = urlsplit(find(objects, "ConfigMap", "microcue-config")["data"]["MICROCUE_PUBLIC_URL"])
    ingress = find(objects, "Ingress", "microcue")["spec"]
    assert public.scheme == "https"
    assert [r["host"] for r in ingress["rules"]] == [public.hostname]
    assert [h for t in ingress["tls"] for h in t["hosts"]] == [public.hostname]


def test_site_example_uses_its_registry_for_every_microcue_container() -> None:
    for workload in workloads(rendered("examples/my-site")):
        spec = pod_spec(workload)
        for c in spec["containers"] + spec.get("initContainers", []):
            if workload["metadata"]["name"].startswith("microcue-"):
                assert c["image"] == "registry.example.com/microcue:0.1.0"


def test_image_tags_follow_the_package_version() -> None:
    """The manifests deploy the version this checkout builds (pyproject.toml)."""

    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for overlay in ("base", "overlays/gpu"):
        for workload in workloads(rendered(overlay)):
            spec = pod_spec(workload)
            for c in spec["containers"] + spec.get("initContainers", []):
                expected = (
                    f"microcue:{version}-gpu" if c["name"] == "worker" and "gpu" in overlay else f"microcue:{version}"
                )
                assert c["image"] == expected, f"{overlay}: {workload['metadata']['name']}/{c['name']}"


def test_site_overlay_on_gpu_keeps_each_images_tag(tmp_path: Path) -> None:
    """docs/deploy.md, "GPU workers": copy my-site, build on overlays/gpu, keep its images entry."""
    site = tmp_path / "site"
    shutil.copytree(K8S / "examples" / "my-site", site)
    kustomization = yaml.safe_load((site / "kustomization.yaml").read_text(encoding="utf-8"))
    kustomization["resources"] = [os.path.relpath(K8S / "overlays" / "gpu", site)]
    (site / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    objects = render_dir(site)
    for obj in objects:
        kubernetes_validate.validate(obj, MIN_KUBERNETES, strict=True)
    worker = container(find(objects, "Deployment", "microcue-worker"), "worker")
    web = container(find(objects, "Deployment", "microcue-web"), "web")
    assert worker["image"] == "registry.example.com/microcue:0.1.0-gpu"
    assert web["image"] == "registry.example.com/microcue:0.1.0"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


def _known_settings() -> set[str]:

    return {f"MICROCUE_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_microcue_variable_is_a_setting(overlay: str) -> None:
    """The app ignores unknown MICROCUE_* variables, so a misspelt one would do nothing, silently."""
    objects = rendered(overlay)
    names = set(find(objects, "ConfigMap", "microcue-config")["data"])
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for c in spec["containers"] + spec.get("initContainers", []):
            names |= {e["name"] for e in c.get("env", []) if e["name"].startswith("MICROCUE_")}
    assert names <= _known_settings(), names - _known_settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_references_are_defined_before_use(overlay: str) -> None:
    """Kubernetes expands $(NAME) only from variables listed earlier in the same container."""
    for workload in workloads(rendered(overlay)):
        spec = pod_spec(workload)
        for c in spec["containers"] + spec.get("initContainers", []):
            defined: set[str] = set()
            for env in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value", "")):
                    assert ref in defined, f"{overlay}: {c['name']} uses $({ref}) before defining it"
                defined.add(env["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_url_is_the_pod_address_and_port(overlay: str) -> None:
    """The web role proxies room signalling to MICROCUE_WORKER_URL: not 0.0.0.0, the pod IP."""
    worker = container(find(rendered(overlay), "Deployment", "microcue-worker"), "worker")
    env = {e["name"]: e for e in worker["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    url = urlsplit(env["MICROCUE_WORKER_URL"]["value"])
    assert url.hostname == "$(pod_ip)"  # urlsplit lower-cases the host
    assert url.port == container_port(worker, "http")


def test_grace_period_covers_the_workers_drain_timeout() -> None:

    bus_flush_s = 5  # the worker's last step after the drain: up to 5 s to flush the bus
    deployment = find(rendered("base"), "Deployment", "microcue-worker")
    pre_stop = int(container(deployment, "worker")["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > pre_stop + worker_command.DRAIN_TIMEOUT_S + bus_flush_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_the_hpa(overlay: str) -> None:
    """A `replicas` in the manifest would undo the autoscaler's count at every apply."""
    objects = rendered(overlay)
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = find(objects, hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"], target["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 1

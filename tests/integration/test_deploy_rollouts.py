"""The built Kubernetes manifests let a node drain and a rollout proceed, and a config edit roll.

Built with ``kubectl kustomize`` (skipped where it is not installed), base and
PostgreSQL overlay alike: what a cluster would get from ``kubectl apply -k``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from syncd.entrypoints.http import SERVING_CHECKS
from tests.integration.deploy_files import KUBERNETES, kustomize

VARIANTS = {"base": Path("base"), "postgresql": Path("overlays") / "postgresql"}


def built(folder: Path) -> dict[str, dict[str, Any]]:
    """kind -> the one manifest of that kind the folder builds (the webhook receiver's
    Service as ``Service/syncd-hooks``)."""
    documents: dict[str, dict[str, Any]] = {}
    for document in kustomize(folder):
        name = document["metadata"]["name"]
        kind = f"Service/{name}" if name == "syncd-hooks" else document["kind"]
        assert kind not in documents, kind
        documents[kind] = document
    return documents


def allowed_disruptions(replicas: int, budget: dict[str, Any]) -> int:
    """Pods a drain may evict with every replica ready (the budget's disruptionsAllowed)."""
    if "minAvailable" in budget:
        return replicas - int(budget["minAvailable"])
    return int(budget["maxUnavailable"])


def config_map_volume(deployment: dict[str, Any]) -> str:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    name: str = volumes["config"]["configMap"]["name"]
    return name


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_drain_and_a_rollout_can_proceed(variant: str) -> None:
    """The disruption budget allows an eviction and the strategy takes a pod down first.

    Readiness only fails on the replica itself (:data:`SERVING_CHECKS`), so every
    replica is normally ready: a budget that allows one disruption then lets a
    node drain go on, and ``maxUnavailable >= 1`` (or ``Recreate``) lets a
    rollout replace pods without waiting for an extra one to become ready.
    """
    documents = built(KUBERNETES / VARIANTS[variant])
    deployment = documents["Deployment"]
    replicas = int(deployment["spec"]["replicas"])
    budget = documents["PodDisruptionBudget"]["spec"]
    assert budget["selector"] == deployment["spec"]["selector"]
    assert 1 <= allowed_disruptions(replicas, budget) <= replicas
    strategy = deployment["spec"]["strategy"]
    if strategy["type"] == "Recreate":
        assert replicas == 1  # SQLite: one writer
    else:
        assert int(strategy["rollingUpdate"]["maxUnavailable"]) >= 1
    [daemon] = deployment["spec"]["template"]["spec"]["containers"]
    assert daemon["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(SERVING_CHECKS) == {"config", "database", "shutdown"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_config_map_name_carries_a_hash(variant: str) -> None:
    """The generated ConfigMap is syncd-config-<hash>, and the pod template mounts that name."""
    documents = built(KUBERNETES / VARIANTS[variant])
    name = documents["ConfigMap"]["metadata"]["name"]
    assert name.startswith("syncd-config-") and len(name) > len("syncd-config-")
    assert config_map_volume(documents["Deployment"]) == name
    assert "config.yaml" in documents["ConfigMap"]["data"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_config_edit_changes_the_pod_template(variant: str, tmp_path: Path) -> None:
    """Editing config.yaml changes the ConfigMap's name in the pod template: pods roll."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    before = built(copy / VARIANTS[variant])
    config = copy / VARIANTS[variant] / "config.yaml"
    text = config.read_text("utf-8")
    assert "log_level: info" in text
    config.write_text(text.replace("log_level: info", "log_level: debug"), "utf-8")
    after = built(copy / VARIANTS[variant])
    assert "log_level: debug" in after["ConfigMap"]["data"]["config.yaml"]
    assert config_map_volume(after["Deployment"]) != config_map_volume(before["Deployment"])
    assert after["Deployment"]["spec"]["template"] != before["Deployment"]["spec"]["template"]

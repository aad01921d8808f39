"""The deployment files: they parse, agree with the Dockerfile and with syncd's config.

The metric names they use are checked against a running daemon in
``tests/e2e/test_deploy_metrics.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncd.config import load_config, parse_config
from syncd.config.types import parse_duration
from tests.integration.deploy_files import (
    COMPOSE,
    DEPLOY,
    KUBERNETES,
    dashboard_expressions,
    deploy_files,
    dockerfile_user,
    kubernetes_documents,
    kustomize,
    metric_names,
    rule_expressions,
    yaml_documents,
)

BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "postgresql"
SECRETS_DIR = "/etc/syncd/secrets"


def deployment(folder: Path = BASE) -> dict[str, Any]:
    return kubernetes_documents(folder)[("Deployment", "syncd")]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [only] = pod_spec()["containers"]
    return dict(only)


def config_text(folder: Path) -> str:
    """The config.yaml the configMapGenerator of ``folder`` makes into syncd-config."""
    return (folder / "config.yaml").read_text("utf-8")


def load_configmap(folder: Path, tmp_path: Path) -> Any:
    """Load the ConfigMap's config through syncd, its secret files placed under ``tmp_path``."""
    text = config_text(folder)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in {
        "sf-password": "pw",
        "sf-security-token": "tok",
        "simz-api-key": "key",
        "database-url": "postgresql+psycopg://syncd:pw@postgres:5432/syncd",
    }.items():
        (secrets / name).write_text(value + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(SECRETS_DIR, str(secrets)))
    return load_config(path, env={})


class TestParse:
    @pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.name))
    def test_every_file_parses(self, path: Path) -> None:
        """Each YAML and JSON file under deploy/ (and docker-compose.yml) is well formed."""
        if path.suffix == ".json":
            assert json.loads(path.read_text("utf-8"))
        else:
            assert yaml_documents(path)

    def test_the_expected_files_exist(self) -> None:
        """The layout operators are told about is there."""
        for relative in (
            "kubernetes/base/kustomization.yaml",
            "kubernetes/base/deployment.yaml",
            "kubernetes/base/service-hooks.yaml",
            "kubernetes/base/config.yaml",
            "kubernetes/overlays/postgresql/config.yaml",
            "kubernetes/base/pdb.yaml",
            "kubernetes/overlays/postgresql/kustomization.yaml",
            "prometheus/rules.yaml",
            "grafana/syncd.json",
        ):
            assert (DEPLOY / relative).is_file(), relative


class TestKubernetes:
    def test_probes_and_port_match_the_configured_listen(self, tmp_path: Path) -> None:
        """Liveness on /healthz, readiness on /readyz, on the port observability.listen binds."""
        config = load_configmap(BASE, tmp_path)
        host, port = config.observability.host_port
        assert host == "0.0.0.0"
        spec = container()
        declared, _hooks = spec["ports"]
        assert declared["containerPort"] == port
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": declared["name"]}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": declared["name"]}
        assert spec["startupProbe"]["httpGet"]["path"] == "/healthz"
        annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        [service_port] = kubernetes_documents(BASE)[("Service", "syncd")]["spec"]["ports"]
        assert service_port["targetPort"] == declared["name"]

    def test_runs_as_the_dockerfile_user_read_only(self) -> None:
        """Non-root with the image's uid/gid, read-only root, no privilege escalation."""
        uid, gid = dockerfile_user()
        security = pod_spec()["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
            uid,
            gid,
            gid,
        )
        assert security["runAsNonRoot"] is True
        own = container()["securityContext"]
        assert own["readOnlyRootFilesystem"] is True
        assert own["allowPrivilegeEscalation"] is False
        assert own["capabilities"]["drop"] == ["ALL"]

    def test_writable_paths_are_volumes(self, tmp_path: Path) -> None:
        """/tmp is an emptyDir, the SQLite folder a mounted volume: the root is read-only."""
        config = load_configmap(BASE, tmp_path)
        database = Path(config.database.url.removeprefix("sqlite:///"))
        mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert "persistentVolumeClaim" in volumes[mounts[str(database.parent)]]
        assert deployment()["spec"]["strategy"]["type"] == "Recreate"  # one SQLite writer

    def test_migrations_run_in_an_init_container(self) -> None:
        """`syncd migrate` runs first, with the daemon's image, config, secrets and mounts."""
        [init] = pod_spec()["initContainers"]
        daemon = container()
        assert (init["args"], daemon["args"]) == (["migrate"], ["run"])
        assert init["image"] == daemon["image"]
        assert init["env"] == daemon["env"]
        assert init["volumeMounts"] == daemon["volumeMounts"]
        assert init["securityContext"] == daemon["securityContext"]

    def test_grace_period_exceeds_shutdown_grace(self, tmp_path: Path) -> None:
        """Kubernetes waits longer than syncd's own shutdown_grace before SIGKILL."""
        grace = load_configmap(BASE, tmp_path).daemon.shutdown_grace.total_seconds()
        assert pod_spec()["terminationGracePeriodSeconds"] > grace

    def test_the_webhook_port_has_a_service_of_its_own(self) -> None:
        """The receiver's port (simz.webhook.listen's default) is declared on the container
        and published by syncd-hooks alone; the Service syncd never carries it."""
        from syncd.config.calls import WebhookConfig

        listen = WebhookConfig.model_fields["listen"].default
        _declared, hooks = container()["ports"]
        assert (hooks["name"], str(hooks["containerPort"])) == ("hooks", listen.split(":")[1])
        documents = kubernetes_documents(BASE)
        [published] = documents[("Service", "syncd-hooks")]["spec"]["ports"]
        assert published["targetPort"] == hooks["name"]
        ports = documents[("Service", "syncd")]["spec"]["ports"]
        assert hooks["name"] not in {port["targetPort"] for port in ports}

    @pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "postgresql"])
    def test_secrets_are_files_of_the_mounted_secret(self, folder: Path, tmp_path: Path) -> None:
        """Every ${file:...} names a key under the Secret's mount, and the config loads."""
        text = config_text(folder)
        mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec()["volumes"]}
        assert volumes[mounts[SECRETS_DIR]]["secret"]["secretName"] == "syncd-secrets"
        references = [part.split("}")[0] for part in text.split("${file:")[1:]]
        assert references and all(ref.startswith(SECRETS_DIR + "/") for ref in references)
        config = load_configmap(folder, tmp_path)
        assert config.simz.api_key.get_secret_value() == "key"

    def test_overlay_builds_two_replicas_on_postgresql(self, tmp_path: Path) -> None:
        """kustomize builds both; the overlay has 2 replicas, PostgreSQL, no PVC, a PDB of 1."""
        base = kustomize(BASE)
        assert {d["kind"] for d in base} >= {"Deployment", "ConfigMap", "PodDisruptionBudget"}
        built = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(OVERLAY)}
        assert ("PersistentVolumeClaim", "syncd-data") not in built
        spec = built[("Deployment", "syncd")]["spec"]
        assert spec["replicas"] == 2
        volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        assert set(volumes["data"]) == {"name", "emptyDir"}
        assert built[("PodDisruptionBudget", "syncd")]["spec"] == {
            "minAvailable": 1,
            "selector": spec["selector"],
        }
        [config_map] = [d for d in built.values() if d["kind"] == "ConfigMap"]
        assert "${file:/etc/syncd/secrets/database-url}" in config_map["data"]["config.yaml"]
        assert load_configmap(OVERLAY, tmp_path).database.url.startswith("postgresql+psycopg://")


class TestCompose:
    def test_services_and_grace(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """syncd, PostgreSQL and both emulators; the mounted config loads; grace above syncd's."""
        compose = yaml_documents(COMPOSE)[0]
        services = compose["services"]
        assert set(services) == {"postgres", "salesforce", "simz", "syncd"}
        assert services["salesforce"]["command"][:2] == ["sandbox", "salesforce"]
        assert services["simz"]["command"][:2] == ["sandbox", "simz"]
        assert services["syncd"]["command"] == ["run"]
        environment = services["syncd"]["environment"]
        assert environment["SYNCD_DATABASE_URL"].startswith("postgresql+psycopg://")
        mounted = {
            volume.split(":")[1]: volume.split(":")[0] for volume in services["syncd"]["volumes"]
        }
        source = COMPOSE.parent / mounted[environment["SYNCD_CONFIG"]]
        # The CA file comes from the emulator's volume at run time; config loading checks
        # that files exist, so a stand-in is put where the container would mount it.
        ca_path = "/sandbox/certs/ca.pem"
        text = source.read_text(encoding="utf-8")
        assert ca_path in text
        stand_in = tmp_path / "ca.pem"
        stand_in.write_text("stand-in\n", encoding="utf-8")
        config = parse_config(text.replace(ca_path, str(stand_in)), str(source), env=environment)
        assert (
            config.simz.api_key.get_secret_value()
            == services["simz"]["environment"]["SIMZ_API_KEY"]
        )
        grace = parse_duration(services["syncd"]["stop_grace_period"]).total_seconds()
        assert grace > config.daemon.shutdown_grace.total_seconds()
        assert config.observability.host_port[1] == 8080
        assert "127.0.0.1:8080:8080" in services["salesforce"]["ports"]

    def test_every_published_port_is_on_loopback(self) -> None:
        """The emulators' control APIs and syncd's port are unauthenticated: host loopback only."""
        services = yaml_documents(COMPOSE)[0]["services"]
        published = [port for service in services.values() for port in service.get("ports", [])]
        assert published
        for port in published:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), port
            assert port.count(":") == 2, port


class TestRulesAndDashboard:
    def test_expressions_name_metrics(self) -> None:
        """Every rule and panel reads at least one series; the parser finds known names."""
        for expression in rule_expressions() + dashboard_expressions():
            assert metric_names(expression), expression
        assert metric_names(
            'histogram_quantile(0.95, sum by (le, sync) (rate(x_bucket{sync=~"$s"}[5m])))'
        ) == {"x_bucket"}
        assert metric_names(
            'a > 1 unless on (sync) label_replace(b == 1, "s", "$1", "n", "(.*)")'
        ) == {
            "a",
            "b",
        }

    def test_required_alerts_exist(self) -> None:
        """The alerts operators rely on are all there, each with a severity and a summary."""
        groups = yaml_documents(DEPLOY / "prometheus" / "rules.yaml")[0]["groups"]
        rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
        for name in (
            "SyncdUncertainLeads",
            "SyncdFailedLeads",
            "SyncdSimzKeyPaused",
            "SyncdSimzAgentPaused",
            "SyncdPollingPaused",
            "SyncdOperatorPauseLong",
            "SyncdPollErrors",
            "SyncdNoLeader",
            "SyncdQueueOld",
            "SyncdHeldLeads",
            "SyncdStreamDisconnected",
            "SyncdStreamStalled",
            "SyncdWritebackFailures",
            "SyncdWritebackBroken",
            "SyncdCallWritebackFailures",
            "SyncdWebhookErrors",
            "SyncdCallEventsBacklog",
        ):
            assert rules[name]["labels"]["severity"] in ("info", "warning", "critical")
            assert rules[name]["annotations"]["summary"]

"""The deploy kit's monitoring and access parts: the PrometheusRule, the ServiceMonitor,
the NetworkPolicy, and every built manifest valid for Kubernetes' own schemas.

The built tests (``TestBuilt``) run ``kubectl kustomize`` on the base and the
PostgreSQL overlay, each alone and with the monitoring component, as
``kubectl apply -k`` would; they are skipped where kubectl is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.deploy_files import KUBERNETES, RULES, kustomize, yaml_documents

MONITORING = KUBERNETES / "components" / "monitoring"
NETWORK_POLICY = KUBERNETES / "base" / "networkpolicy.yaml"
VARIANTS = {"base": KUBERNETES / "base", "postgresql": KUBERNETES / "overlays" / "postgresql"}
#: Kinds of the Prometheus operator's CRDs: kubernetes-validate has no schema for
#: them (they are not Kubernetes' own), so they are checked by the tests here instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: The Service of the webhook receiver, the one port meant to be published.
HOOKS_SERVICE = "syncd-hooks"


def build(folder: Path, tmp_path: Path, *, monitoring: bool) -> dict[str, dict[str, Any]]:
    """kind -> the one manifest of that kind, built from ``folder`` (plus the component)."""
    if monitoring:
        # What an operator's own kustomization does: the variant plus the component.
        root = tmp_path / "with-monitoring"
        root.mkdir()
        (root / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {os.path.relpath(folder, root)}\n"
            f"components:\n  - {os.path.relpath(MONITORING, root)}\n"
        )
        folder = root
    documents: dict[str, dict[str, Any]] = {}
    for document in kustomize(folder):
        name = document["metadata"]["name"]
        kind = f"Service/{name}" if name == HOOKS_SERVICE else document["kind"]
        assert kind not in documents, kind
        documents[kind] = document
    return documents


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's matchLabels and matchExpressions (In) against ``labels``."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


class TestFiles:
    def test_the_prometheus_rule_holds_rules_yaml(self) -> None:
        """The PrometheusRule's groups are rules.yaml's, alert for alert."""
        [rule] = yaml_documents(MONITORING / "prometheusrule.yaml")
        assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
        expected = yaml_documents(RULES)[0]["groups"]
        assert rule["spec"]["groups"] == expected, (
            "deploy/kubernetes/components/monitoring/prometheusrule.yaml differs from "
            "deploy/prometheus/rules.yaml: copy rules.yaml's groups under spec:"
        )

    def test_the_component_lists_its_manifests(self) -> None:
        component = yaml_documents(MONITORING / "kustomization.yaml")[0]
        assert component["kind"] == "Component"
        kinds = {
            doc["kind"]
            for name in component["resources"]
            for doc in yaml_documents(MONITORING / name)
        }
        assert kinds == CRD_KINDS


class TestBuilt:
    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_the_network_policy_lets_only_prometheus_in(self, variant: str, tmp_path: Path) -> None:
        """The daemon's pods accept only Prometheus of namespace monitoring, on the http port.

        kubelet probes come from the pod's node, which a NetworkPolicy never blocks.
        The built peer must be the file's: the kustomization's ``labels``
        (includeSelectors) rewrite a matchLabels app.kubernetes.io/name.
        """
        built = build(VARIANTS[variant], tmp_path, monitoring=False)
        policy = built["NetworkPolicy"]["spec"]
        pod = built["Deployment"]["spec"]["template"]
        assert matches(policy["podSelector"], pod["metadata"]["labels"])
        assert policy["policyTypes"] == ["Ingress"]
        rule, hooks_rule = policy["ingress"]
        [port] = rule["ports"]
        [container] = pod["spec"]["containers"]
        assert port == {"protocol": "TCP", "port": container["ports"][0]["name"]}
        # The webhook port, from anywhere (the load balancer): only that port.
        assert hooks_rule == {"ports": [{"protocol": "TCP", "port": "hooks"}]}
        [peer] = rule["from"]
        [source] = yaml_documents(NETWORK_POLICY)[0]["spec"]["ingress"][0]["from"]
        assert peer == source
        prometheus = {"app.kubernetes.io/name": "prometheus"}
        assert matches(peer["podSelector"], prometheus)
        assert not matches(peer["podSelector"], pod["metadata"]["labels"])
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
        }

    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_the_service_monitor_scrapes_each_pod_as_job_syncd(
        self, variant: str, tmp_path: Path
    ) -> None:
        """It selects the Service, on its http port at /metrics; the job is "syncd"."""
        built = build(VARIANTS[variant], tmp_path, monitoring=True)
        monitor = built["ServiceMonitor"]["spec"]
        service = built["Service"]
        assert matches(monitor["selector"], service["metadata"]["labels"])
        [endpoint] = monitor["endpoints"]
        [service_port] = service["spec"]["ports"]
        assert (endpoint["port"], endpoint["path"]) == (service_port["name"], "/metrics")
        assert service["metadata"]["labels"][monitor["jobLabel"]] == "syncd"  # up{job="syncd"}
        # The hooks Service carries the same labels but no http port: never scraped.
        hooks = built[f"Service/{HOOKS_SERVICE}"]["spec"]["ports"]
        assert endpoint["port"] not in {p["name"] for p in hooks}
        assert built["PrometheusRule"]["spec"]["groups"] == yaml_documents(RULES)[0]["groups"]

    def test_the_built_prometheus_rule_passes_promtool(self, tmp_path: Path) -> None:
        """What kustomize hands the cluster is parsed by Prometheus: its groups as a rule file.

        (A folded ``>-`` expression with deeper lines came out of kustomize with a blank
        line added; the rules use ``|-`` for multi-line expressions.)
        """
        from tests.integration.test_prometheus_rules import run_promtool

        rule = build(VARIANTS["postgresql"], tmp_path, monitoring=True)["PrometheusRule"]
        path = tmp_path / "built_rules.yaml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), "utf-8")
        result = run_promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("monitoring", [False, True], ids=["plain", "monitoring"])
    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_every_manifest_is_valid_kubernetes(
        self, variant: str, monitoring: bool, tmp_path: Path
    ) -> None:
        """Each built manifest against Kubernetes' schemas (strict: no unknown field)."""
        validate = pytest.importorskip(
            "kubernetes_validate", reason="kubernetes-validate (dev extras) is not installed"
        )
        built = build(VARIANTS[variant], tmp_path, monitoring=monitoring)
        checked = set()
        for kind, document in built.items():
            if kind in CRD_KINDS:
                continue  # not in Kubernetes' schemas; checked field by field above
            validate.validate(document, validate.latest_version(), strict=True)
            checked.add(kind)
        assert checked >= {"Deployment", "Service", "ConfigMap", "NetworkPolicy"}
        assert ("PodDisruptionBudget" in checked) and (set(built) - checked <= CRD_KINDS)

    def test_validation_catches_a_bad_manifest(self, tmp_path: Path) -> None:
        """The check above fails on a misspelt field: it is not a no-op."""
        validate = pytest.importorskip(
            "kubernetes_validate", reason="kubernetes-validate (dev extras) is not installed"
        )
        policy = build(VARIANTS["base"], tmp_path, monitoring=False)["NetworkPolicy"]
        policy["spec"]["ingres"] = policy["spec"].pop("ingress")
        with pytest.raises(validate.ValidationError):
            validate.validate(policy, validate.latest_version(), strict=True)

"""Readers for the files under ``deploy/`` and the top-level ``docker-compose.yml``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
RULES = DEPLOY / "prometheus" / "rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "syncd.json"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

#: Series names Prometheus itself provides, not syncd.
PROMETHEUS_SERIES = {"up"}


def yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]


def deploy_files() -> list[Path]:
    found = [p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    return sorted([*found, COMPOSE])


def rule_expressions() -> list[str]:
    groups = yaml_documents(RULES)[0]["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text("utf-8"))
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict) and "query" in query:
            # label_values(series, label): only the series is a metric.
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query["query"]))
    return exprs


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "unless", "and", "or",
    "offset", "bool", "le", "time", "sum", "max", "min", "avg", "count", "rate", "increase",
    "delta", "histogram_quantile", "label_replace", "label_values", "abs",
}  # fmt: skip


def metric_names(expression: str) -> set[str]:
    """Series names a PromQL expression reads (label names, strings and functions removed)."""
    text = re.sub(r'"[^"]*"', '""', expression)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    text = re.sub(r"\b[a-z_]+\s*\(", "(", text)  # function calls
    names = {m.group(1) for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b", text)}
    return {n for n in names if n not in _PROMQL_WORDS and not n.isdigit()}


def kubernetes_documents(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> manifest, for the resources a kustomization lists."""
    kustomization = yaml_documents(folder / "kustomization.yaml")[0]
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():
            documents.update(kubernetes_documents(path))
            continue
        for doc in yaml_documents(path):
            documents[(doc["kind"], doc["metadata"]["name"])] = doc
    return documents


def dockerfile_user() -> tuple[int, int]:
    """The uid and gid the image runs as (its last USER line, numeric)."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text("utf-8"), re.M)
    uid, gid = users[-1]
    return int(uid), int(gid)


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize folder``, as documents; skips the test without kubectl."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

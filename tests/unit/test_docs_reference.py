"""The configuration reference, docs/configuration.md, matches the config models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncd.config.models import Config
from syncd.config.reference import MISSING_DESCRIPTION, reference_keys, render, tables

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _schema_keys(schema: dict[str, Any]) -> set[str]:
    """Every key of the JSON Schema as a dotted path, descending only into models."""
    defs = schema.get("$defs", {})
    found: set[str] = set()

    def models(node: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
        if "$ref" in node:
            return [(defs[node["$ref"].rsplit("/", 1)[1]], False)]
        if node.get("type") == "array" and "$ref" in node.get("items", {}):
            return [(defs[node["items"]["$ref"].rsplit("/", 1)[1]], True)]
        result: list[tuple[dict[str, Any], bool]] = []
        for key in ("anyOf", "oneOf"):
            for option in node.get(key, []):
                result.extend(models(option))
        return result

    def walk(model: dict[str, Any], prefix: str) -> None:
        for name, node in model.get("properties", {}).items():
            path = f"{prefix}.{name}" if prefix else name
            if prefix:  # top-level sections are headings, not keys
                found.add(path)
            for sub, is_list in models(node):
                walk(sub, f"{path}[]" if is_list else path)

    walk(schema, "")
    return found


class TestConfigurationReference:
    def test_committed_file_is_current(self) -> None:
        """docs/configuration.md is exactly what the generator prints for today's models."""
        assert REFERENCE.read_text(encoding="utf-8") == render(), (
            "docs/configuration.md is stale: the config models changed. "
            "Run `make docs` (python -m syncd.config.reference > docs/configuration.md) "
            "and commit the result."
        )

    def test_every_schema_key_is_documented(self) -> None:
        """Every key of the JSON Schema (`syncd config-schema`) has a row, and no row is extra."""
        schema_keys = _schema_keys(Config.model_json_schema())
        assert schema_keys, "the schema walk found no keys"
        assert "syncs[].schedule.every" in schema_keys
        assert "salesforce.auth.consumer_secret" in schema_keys
        assert reference_keys() == schema_keys

    def test_every_key_is_described(self) -> None:
        """No row falls back to the placeholder: every model field carries a description."""
        undescribed = [
            f"{table.path}.{row.key}"
            for table in tables()
            for row in table.rows
            if row.description == MISSING_DESCRIPTION
        ]
        assert undescribed == [], (
            f"add a description (Field(description=...) or a docstring) to: {undescribed}"
        )

    def test_nested_defaults_come_from_the_parent_default(self) -> None:
        """A sync's schedule defaults to every 60s although ScheduleConfig.every has no default."""
        rows = {row.key: row for table in tables() if table.path == "syncs[]" for row in table.rows}
        assert rows["schedule.every"].default == "`1m`"
        assert rows["schedule.cron"].default == "none"
        assert rows["mapping.phoneNumber"].default == "required"
        assert rows["lookback"].type == "duration"

    def test_login_methods_get_a_table_each(self) -> None:
        """Each member of the salesforce.auth union has its own table headed by its method."""
        headings = [table.heading for table in tables() if table.path == "salesforce.auth"]
        assert headings == [
            f"### `salesforce.auth` with `method: {method}`"
            for method in ("password", "jwt", "client_credentials", "session")
        ]


class _Target(BaseModel):
    """Where a copy goes."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    field: str
    """The field written."""


class _Webhook(BaseModel):
    """Post outcomes to a URL."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    kind: Literal["webhook"]
    """Selects a webhook."""
    url: str
    """Where to post."""


class _Queue(BaseModel):
    """Put outcomes on a queue."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    kind: Literal["queue"]
    """Selects a queue."""
    name: str = "outcomes"
    """Queue name."""


class _Section(BaseModel):
    """A section with a nested list and a union tagged by kind."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    targets: list[_Target] = Field(default_factory=list)
    """Copies to make."""
    sink: Annotated[_Webhook | _Queue, Field(discriminator="kind")]
    """Where outcomes go."""
    undescribed: int = 3


class _Root(BaseModel):
    section: _Section
    """The only section."""


class TestGeneratorShapes:
    def test_nested_lists_and_other_tags_are_walked_like_the_schema(self) -> None:
        """Lists of sections nest with [] and a union tagged by `kind` gets a table per kind."""
        assert reference_keys(_Root) == _schema_keys(_Root.model_json_schema())
        headings = [table.heading for table in tables(_Root)]
        assert headings == [
            "## `section`",
            "### `section.sink` with `kind: webhook`",
            "### `section.sink` with `kind: queue`",
        ]

    def test_a_field_without_description_is_visible(self) -> None:
        """A key the model does not describe shows the placeholder, never an empty cell."""
        rows = {row.key: row for table in tables(_Root) for row in table.rows}
        assert rows["undescribed"].description == MISSING_DESCRIPTION
        assert rows["targets"].type == "list of sections"
        assert rows["targets[].field"].description == "The field written."

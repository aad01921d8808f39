"""Write the configuration reference, docs/configuration.md, from the config models.

``python -m syncd.config.reference > docs/configuration.md`` (or ``make docs``)
prints it; a test fails when the committed file differs from what this prints.
Every key, its type, default and description come from the pydantic models in
:mod:`syncd.config.models`, so the reference cannot drift from what is validated.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, HttpUrl, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from syncd.config.models import Config
from syncd.config.types import FieldRef, format_duration

#: Shown for a key whose model gives neither a description nor a docstring.
MISSING_DESCRIPTION = "(not described yet: add a description to the model field)"


@dataclass(frozen=True)
class Row:
    """One key of the reference: its dotted name, type, default and description."""

    key: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Table:
    """The keys of one part of the file, under a heading."""

    path: str
    heading: str
    intro: str
    rows: tuple[Row, ...]


def tables(root: type[BaseModel] = Config) -> list[Table]:
    """Every table of the reference, in the order of the configuration file."""
    found: list[Table] = []
    for name, field in root.model_fields.items():
        found.extend(_section_tables(name, field))
    return found


def reference_keys(root: type[BaseModel] = Config) -> set[str]:
    """Every documented key as a full dotted path (``syncs[].schedule.every``)."""
    return {f"{table.path}.{row.key}" for table in tables(root) for row in table.rows}


def render() -> str:
    """The whole of docs/configuration.md."""
    parts = [_HEADER]
    for table in tables():
        parts.append(f"{table.heading}\n\n")
        if table.intro:
            parts.append(f"{table.intro}\n\n")
        parts.append("| key | type | default | description |\n| --- | --- | --- | --- |\n")
        for row in table.rows:
            cells = (f"`{row.key}`", row.type, row.default, row.description)
            parts.append("| " + " | ".join(_cell(cell) for cell in cells) + " |\n")
        parts.append("\n")
    parts.append(_FOOTER)
    return "".join(parts)


# --------------------------------------------------------------------------- walking the models


def _section_tables(name: str, field: FieldInfo) -> list[Table]:
    """The table(s) of one top-level section; a login union gets one table per method."""
    model, is_list = _model_of(field.annotation)
    assert model is not None, f"top-level key {name} is not a section"
    path = f"{name}[]" if is_list else name
    required = "Required." if field.is_required() else "Optional: every key has a default."
    shape = " A list; each entry has these keys." if is_list else ""
    intro = f"{_description(field, model)} {required}{shape}"
    default = None if is_list or field.is_required() else _default_of(field)
    rows: list[Row] = []
    unions: list[tuple[str, FieldInfo]] = []
    for key, row_or_union in _rows(model, default, prefix=""):
        if isinstance(row_or_union, Row):
            rows.append(row_or_union)
        else:
            unions.append((key, row_or_union))
    result = [Table(path, f"## `{path}`", intro, tuple(rows))]
    for key, union_field in unions:
        result.extend(_union_tables(f"{path}.{key}", union_field))
    return result


def _rows(
    model: type[BaseModel], instance: Any, prefix: str
) -> Iterator[tuple[str, Row | FieldInfo]]:
    """Rows for every key of ``model``, nested sections flattened into dotted keys."""
    if not isinstance(instance, model):  # e.g. a union whose default is a plain value
        instance = None
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if _variants(field.annotation):
            described = _description(field)
            tag = field.discriminator if isinstance(field.discriminator, str) else "method"
            yield key, Row(key, f"section, by `{tag}`", "required", described)
            yield key, field
            continue
        default = getattr(instance, name) if instance is not None else _default_of(field)
        nested, is_list = _model_of(field.annotation)
        yield key, Row(key, _type_name(field), _default_text(field, default), _description(field))
        if nested is not None and is_list:
            yield from _rows(nested, None, prefix=f"{key}[].")
        elif nested is not None:
            yield from _rows(nested, default, prefix=f"{key}.")


def _union_tables(path: str, field: FieldInfo) -> list[Table]:
    """One table per member of a discriminated union such as ``salesforce.auth``."""
    result: list[Table] = []
    tag = field.discriminator if isinstance(field.discriminator, str) else "method"
    for variant in _variants(field.annotation):
        value = get_args(variant.model_fields[tag].annotation)[0]
        intro = (variant.__doc__ or "").strip()
        rows = tuple(row for _, row in _rows(variant, None, prefix="") if isinstance(row, Row))
        heading = f"### `{path}` with `{tag}: {value}`"
        result.append(Table(path, heading, intro, rows))
    return result


def _variants(annotation: Any) -> list[type[BaseModel]]:
    """The member models of a union of several models, else nothing."""
    members = [arg for arg in _union_args(annotation) if _is_model(arg)]
    return members if len(members) > 1 else []


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The nested section model of a field (and whether it is a list of them)."""
    for arg in _union_args(annotation):
        if _is_model(arg):
            return arg, False
        if get_origin(arg) is list and _is_model(get_args(arg)[0]):
            return get_args(arg)[0], True
    return None, False


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel) and value is not FieldRef


def _union_args(annotation: Any) -> list[Any]:
    """The members of a union (``None`` left out), or the annotation itself."""
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_strip(arg) for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


# --------------------------------------------------------------------------- cells


def _description(field: FieldInfo, model: type[BaseModel] | None = None) -> str:
    """The field's description, else the docstring of its section, else a visible gap."""
    if field.description:
        return " ".join(field.description.split())
    nested = model or _model_of(field.annotation)[0]
    if nested is not None and nested.__doc__ and nested.__doc__ != BaseModel.__doc__:
        return nested.__doc__.strip().splitlines()[0]
    return MISSING_DESCRIPTION


def _type_name(field: FieldInfo) -> str:
    """A reader's name for the field's type, with its limits."""
    name = _annotation_name(field.annotation)
    limits = _limits(field.metadata)
    return f"{name}, {limits}" if limits else name


def _annotation_name(annotation: Any) -> str:
    members = _union_args(annotation)
    if len(members) > 1:
        return " or ".join(_single_name(member) for member in members)
    return _single_name(members[0])


def _single_name(tp: Any) -> str:
    if get_origin(tp) is Literal and len(get_args(tp)) == 1:
        return f"`{get_args(tp)[0]}`"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(tp))
    if get_origin(tp) is dict:
        return f"map of string to {_annotation_name(get_args(tp)[1])}"
    if get_origin(tp) is list and _is_model(get_args(tp)[0]):
        return "list of sections"
    if get_origin(tp) is list:
        return f"list of {_annotation_name(get_args(tp)[0])}"
    if tp is FieldRef:
        return "field path or `{const: value}`"
    if _is_model(tp):
        return "section"
    return _SIMPLE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


_SIMPLE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    timedelta: "duration",
    datetime: "ISO date-time",
    SecretStr: "secret string",
    HttpUrl: "URL",
}


def _limits(metadata: list[Any]) -> str:
    """Numeric bounds, lengths and patterns of a field, in words."""
    low = high = ""
    words: list[str] = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge:g}"
        elif isinstance(item, annotated_types.Gt):
            low = f"more than {item.gt:g}"
        elif isinstance(item, annotated_types.Le):
            high = f"{item.le:g}"
        elif isinstance(item, annotated_types.Lt):
            high = f"less than {item.lt:g}"
        elif isinstance(item, annotated_types.MinLen):
            words.append("not empty" if item.min_length == 1 else f"at least {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} characters")
        elif getattr(item, "pattern", None):
            words.append(f"matching `{item.pattern}`")
    if low and high and not low.startswith("more") and not high.startswith("less"):
        words.insert(0, f"{low} to {high}")
    elif low and high:
        at_most = high if high.startswith("less") else f"at most {high}"
        words.insert(0, f"{low if low.startswith('more') else 'at least ' + low}, {at_most}")
    elif low:
        words.insert(0, low if low.startswith("more") else f"at least {low}")
    elif high:
        words.insert(0, high if high.startswith("less") else f"at most {high}")
    return ", ".join(words)


def _default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def _default_text(field: FieldInfo, default: Any) -> str:
    """The default as it would be written in the YAML file."""
    if field.is_required() and default is None:
        return "required"
    if default is None:
        return "none"
    if isinstance(default, BaseModel):
        return "(section)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, timedelta):
        return f"`{format_duration(default)}`"
    if isinstance(default, SecretStr):
        return '`""`' if not default.get_secret_value() else "(secret)"
    if isinstance(default, float):
        return f"`{default:g}`"
    if isinstance(default, list) and default:
        return f"`[{', '.join(str(item) for item in default)}]`"
    if isinstance(default, dict | list):
        return "`{}`" if isinstance(default, dict) else "`[]`"
    if isinstance(default, str) and not default:
        return '`""`'
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- fixed text

_HEADER = """\
<!-- Generated by `python -m syncd.config.reference` from syncd/config/models.py.
     Do not edit: change the models and run `make docs`. -->

# Configuration reference

One YAML file configures syncd. Every command that reads it takes
`-c/--config FILE`; the default is `$SYNCD_CONFIG`, else `./config.yaml`.
[`config.example.yaml`](../config.example.yaml) is a commented example of every
key, and `syncd config-schema` prints the JSON Schema generated from the same
models (point your editor's YAML language server at it:
`syncd config-schema > syncd.schema.json`).

## How the file is read

* **Unknown keys are errors**, so a misspelt option never goes unnoticed.
* **Errors** are one line per problem on stderr, naming the file and the key
  (and the line for YAML errors), with exit status 2 and no traceback:

  ```text
  config.yaml: syncs[0].mapping.phoneNumber: field required
  config.yaml: simz.api_key: environment variable SIMZ_API_KEY is not set
  config.yaml:14:3: simz.api_key: duplicate key (first set on line 12)
  ```

  `syncd check-config -c FILE` validates a file and prints one line per sync;
  `--connect` also logs in to Salesforce and opens a connection to SimZ. To
  check `config.example.yaml` as it is, set `SF_USERNAME`, `SF_PASSWORD`,
  `SF_SECURITY_TOKEN` and `SIMZ_API_KEY` first.
* **Environment variables and secret files.** Substitution happens inside
  string values after the YAML is parsed, so a value can never change the
  structure of the file:

  | you write | you get |
  | --- | --- |
  | `${VAR}` | the environment variable `VAR`; an error if it is not set |
  | `${VAR:-default}` | `VAR`, or `default` when `VAR` is unset or empty |
  | `${file:/run/secrets/simz_key}` | the file's content without its trailing newline |
  | `$${` | a literal `${` |

  Secrets (passwords, tokens, the SimZ API key, the database password) are
  masked as `[REDACTED]` in every log line.
* **Durations** are a number of seconds or a string such as `500ms`, `30s`,
  `10m`, `24h`, `1d` (at most ten years).
* **Field paths** name a field of the polled object (`Phone`) or of a related
  record (`Owner.Email`); `{const: value}` gives a constant instead.
* **Defaults**: "required" keys have no default; "none" means the key is
  unset unless you set it; a "section" row groups the keys under it.

"""

_FOOTER = """\
## Notes on some keys

* `syncs[].start_at` is read once, at the sync's first poll, and stored:
  editing it later does not move a running sync's window. See
  [design](design.md#start_at-is-read-once).
* Set exactly one of `syncs[].agent` and `syncs[].route`, and exactly one of
  `schedule.every` and `schedule.cron`.
* `simz.resend_uncertain` can make SimZ call a person twice; see
  [design](design.md#unknown-is-explicit) before turning it on.
* `daemon.replica_id` and `daemon.lease_ttl` matter only with several replicas
  on PostgreSQL; see [operations](operations.md#running-several-replicas).
* `database.url`: percent-encode special characters in a PostgreSQL password.
  An in-memory SQLite database is refused: it would forget what was sent.
* `simz.batch_size`: SimZ documents no maximum; a 413 splits the batch in
  halves (see [design](design.md#split-batches)).
* `simz.max_attempts` counts 429, 503 and "nothing sent" answers; 401, 402 and
  404 pause delivery without using attempts (see
  [design](design.md#which-answers-use-an-attempt)).
* `--log-format` and `--log-level` before the command
  (`syncd --log-level debug run`) override `observability`.
"""


if __name__ == "__main__":
    sys.stdout.write(render())

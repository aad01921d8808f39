"""Read the YAML file, substitute ``${...}`` references, validate, report clearly.

Every problem becomes one line ``<file>: <key path>: <what is wrong>`` inside a
:class:`ConfigError`; the CLI prints those lines and exits with status 2.

Substitution happens on the parsed YAML tree, inside string values only, so a
secret can never change the structure of the document:

* ``${VAR}`` -- the environment variable, which must be set;
* ``${VAR:-default}`` -- the variable, or ``default`` when unset or empty;
* ``${file:/path/to/secret}`` -- the file's content without one trailing newline
  (``\\n`` or ``\\r\\n``, as editors and ``echo`` add it); anything else is kept, so
  a stray second newline is reported by the value's own checks;
* ``$${`` -- a literal ``${``.

Relative paths -- ``${file:...}``, ``ca_bundle``, ``private_key_file`` and a
SQLite file in ``database.url`` -- are read from the configuration file's folder,
not from the current directory, so a command gives the same result wherever it
is started; files named by the configuration must exist when it is loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from syncd.config.models import AUTH_METHODS, Config

#: The sections whose secrets only the commands that call Salesforce or SimZ need.
CREDENTIAL_SECTIONS = frozenset({"salesforce", "simz"})
#: For the commands that only read or change the database.
DATABASE_ONLY: frozenset[str] = frozenset()

#: ``$${`` (an escape), ``${...}`` (a reference), or a ``${`` that is never closed.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(Exception):
    """The configuration cannot be used; ``lines`` says why, one problem a line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def format_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class _Loader(yaml.SafeLoader):
    """A SafeLoader that leaves dates as strings.

    PyYAML turns ``2024-01-31`` into a date and ``2024-13-01`` into a crash;
    the models parse dates themselves, with a clear message for bad ones.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(
    node: yaml.Node, loc: tuple[int | str, ...], source: str, problems: list[str], seen: set[int]
) -> None:
    """Report every key written twice in one mapping (PyYAML would keep the last one).

    Keys brought in by a ``<<`` merge may be overridden, as YAML intends.
    """
    if id(node) in seen:  # an alias: already checked where its anchor was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode):
                mark = key_node.start_mark
                if (key_node.tag, key) in first_line:
                    problems.append(
                        f"{source}:{mark.line + 1}:{mark.column + 1}: "
                        f"{format_path((*loc, key))}: duplicate key "
                        f"(first set on line {first_line[(key_node.tag, key)]})"
                    )
                else:
                    first_line[(key_node.tag, key)] = mark.line + 1
            _duplicate_keys(value_node, (*loc, key), source, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _duplicate_keys(item, (*loc, index), source, problems, seen)


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document; duplicate keys and syntax errors become :class:`ConfigError`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems: list[str] = []
        _duplicate_keys(node, (), source, problems, set())
        if problems:
            raise ConfigError(problems)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from None
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def _strip_one_newline(text: str) -> str:
    """``text`` without one trailing ``\\n`` or ``\\r\\n``."""
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _substitute_string(
    text: str,
    path: str,
    env: Mapping[str, str],
    problems: list[str],
    source: str,
    base_dir: Path | None = None,
    unresolved: list[str] | None = None,
) -> str:
    def missing(match: re.Match[str], problem: str) -> str:
        """Report ``problem``, or, where secrets may stay unresolved, keep the reference."""
        if unresolved is None:
            problems.append(f"{source}: {path}: {problem}")
            return ""
        unresolved.append(path)
        return match.group(0)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            problems.append(
                f"{source}: {path}: ${{ is never closed by }} (write $${{ for a literal ${{)"
            )
            return ""
        if body.startswith("file:"):
            if not body[len("file:") :].strip():
                problems.append(f"{source}: {path}: ${{file:}} needs a path")
                return ""
            secret_path = Path(body[len("file:") :]).expanduser()
            if base_dir is not None and not secret_path.is_absolute():
                secret_path = base_dir / secret_path
            try:
                return _strip_one_newline(secret_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                return missing(match, f"cannot read secret file {str(secret_path)!r}: {reason}")
        name, has_default, default = body.partition(":-")
        if not _VAR_NAME.match(name):
            problems.append(f"{source}: {path}: ${{{body}}} is not a valid reference")
            return ""
        value = env.get(name)
        if has_default:
            return value if value else default
        if value is None:
            return missing(match, f"environment variable {name} is not set")
        return value

    return _REFERENCE.sub(replace, text)


def substitute(
    node: Any,
    env: Mapping[str, str],
    source: str,
    problems: list[str],
    loc: tuple[Any, ...] = (),
    base_dir: Path | None = None,
    unused: frozenset[str] = frozenset(),
    unresolved: list[str] | None = None,
) -> Any:
    """Return ``node`` with every ``${...}`` reference in its strings resolved.

    A relative ``${file:...}`` path is read from ``base_dir`` (when given). In the
    top-level sections named in ``unused``, a reference that cannot be resolved
    (variable unset, file unreadable) is kept as written and its key path added
    to ``unresolved`` instead of being a problem.
    """
    if isinstance(node, str):
        keep = unresolved if loc and loc[0] in unused else None
        return _substitute_string(node, format_path(loc), env, problems, source, base_dir, keep)
    if isinstance(node, dict):
        return {
            key: substitute(value, env, source, problems, (*loc, key), base_dir, unused, unresolved)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            substitute(value, env, source, problems, (*loc, i), base_dir, unused, unresolved)
            for i, value in enumerate(node)
        ]
    return node


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the parts pydantic adds for tagged unions (``auth.password.username``)."""
    out: list[int | str] = []
    for part in loc:
        if out and out[-1] == "auth" and part in AUTH_METHODS:
            continue
        if isinstance(part, str) and (
            part.startswith("function-") or part in {"datetime", "literal['now']"}
        ):
            continue
        out.append(part)
    return tuple(out)


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "field required"
    if kind == "union_tag_invalid":
        context = error.get("ctx", {})
        return f"{context.get('tag')!r} is not one of {context.get('expected_tags')}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config.example.yaml)"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message[:1].lower() + message[1:]


def validation_lines(exc: ValidationError, source: str) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        loc = _clean_loc(tuple(error["loc"]))
        if error["type"] == "union_tag_invalid":
            loc = (*loc, "method")
        path = format_path(loc)
        if path in seen:  # one line per key: union members would repeat it
            continue
        seen.add(path)
        lines.append(f"{source}: {path}: {_message(error)}")
    return lines


def parse_config(
    text: str,
    source: str = "config.yaml",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    uses: frozenset[str] | None = None,
) -> Config:
    """Parse, substitute and validate a configuration document.

    ``base_dir`` is the folder relative paths are read from (the file's folder
    for :func:`load_config`); without it they stay relative to the current one.
    ``uses`` names the credential sections (``salesforce``, ``simz``) the command
    talks to; in the others, unresolvable ``${...}`` references are kept as
    written (listed in :attr:`Config.unresolved`) instead of failing the load.
    """
    raw = load_yaml(text, source)
    if raw is None:
        raise ConfigError([f"{source}: the file is empty"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of sections"])
    problems: list[str] = []
    unresolved: list[str] = []
    unused = CREDENTIAL_SECTIONS - (CREDENTIAL_SECTIONS if uses is None else uses)
    resolved = substitute(
        raw,
        os.environ if env is None else env,
        source,
        problems,
        base_dir=base_dir,
        unused=unused,
        unresolved=unresolved,
    )
    if problems:
        raise ConfigError(problems)
    try:
        config = Config.model_validate(resolved, context={"config_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(validation_lines(exc, source)) from None
    config._unresolved = tuple(unresolved)
    return config


def default_config_path() -> Path:
    return Path(os.environ.get("SYNCD_CONFIG") or "config.yaml")


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    uses: frozenset[str] | None = None,
) -> Config:
    """Load the configuration file at ``path``; raises :class:`ConfigError`.

    ``uses``: see :func:`parse_config` (default: every section's secrets are needed).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{file}: no such file (pass -c FILE or set SYNCD_CONFIG; see config.example.yaml)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read: {exc}"]) from None
    return parse_config(text, str(file), env, base_dir=file.resolve().parent, uses=uses)

"""config.example.yaml's call-outcome blocks: commented out they change nothing, and
uncommented (as an operator turns them on) they load as they stand."""

from __future__ import annotations

from pathlib import Path

from syncd.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
ENV = {
    "SF_USERNAME": "integration@example.com",
    "SF_PASSWORD": "sf-password-value",
    "SF_SECURITY_TOKEN": "sf-token-value",
    "SIMZ_API_KEY": "simz-key-value",
    "SIMZ_WEBHOOK_TOKEN": "t" * 40,
    "SIMZ_WEBHOOK_CORRELATION_SECRET": "c" * 40,
}


def uncomment(text: str, opening: str) -> str:
    """The commented block that starts with the line ``opening`` (``# key:``), turned on:
    the ``# `` after its indent is removed from it and each following line of the block."""
    lines = text.splitlines()
    start = lines.index(opening)
    indent = opening.index("#")
    prefix = opening[: indent + 1] + " "
    lines[start] = opening[:indent] + opening[indent + 2 :]
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith(prefix + "  "):
            break
        lines[i] = lines[i][:indent] + lines[i][indent + 2 :]
    return "\n".join(lines) + "\n"


def test_the_example_has_webhooks_off(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, env=ENV)
    assert config.simz.webhook is None
    assert all(sync.call_writeback is None for sync in config.syncs)


def test_the_call_blocks_load_once_uncommented(tmp_path: Path) -> None:
    """simz.webhook with its secrets from the environment, and Tasks for the sync."""
    text = uncomment(EXAMPLE.read_text("utf-8"), "  # webhook:")
    text = uncomment(text, "    # call_writeback:")
    path = tmp_path / "config.yaml"
    path.write_text(text, "utf-8")
    config = load_config(path, env=ENV)
    webhook = config.simz.webhook
    assert webhook is not None
    assert webhook.token.get_secret_value() == "t" * 40
    assert webhook.host_port() == ("0.0.0.0", 8081)
    assert webhook.paths.outcome == "$.call.outcome"
    assert webhook.disposition_map == {"not_interested": "Not Interested"}
    [sync] = config.syncs
    assert sync.call_writeback is not None and sync.call_writeback.mode == "tasks"

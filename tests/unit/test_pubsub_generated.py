"""The checked-in Pub/Sub modules are exactly what ``make proto`` makes of the .proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.pubsub import pubsub_api_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("syncd/pubsub/pubsub_api.proto")
GENERATED = [
    "pubsub_api_pb2.py",
    "pubsub_api_pb2.pyi",
    "pubsub_api_pb2_grpc.py",
    "pubsub_api_pb2_grpc.pyi",
]


def _plugin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


class TestGeneratedCode:
    def test_regenerated_modules_match(self, tmp_path: Path) -> None:
        """Generating from the .proto into a temporary folder gives the checked-in files."""
        pytest.importorskip("grpc_tools")
        (tmp_path / PROTO.parent).mkdir(parents=True)
        shutil.copy(ROOT / PROTO, tmp_path / PROTO)
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            "--mypy_out=.",
            "--mypy_grpc_out=.",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            str(PROTO),
        ]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        stale = [
            name
            for name in GENERATED
            if (tmp_path / PROTO.parent / name).read_bytes()
            != (ROOT / PROTO.parent / name).read_bytes()
        ]
        assert stale == [], f"out of date, run `make proto`: {stale}"

    def test_wire_numbers(self) -> None:
        """The field numbers the wire depends on are the Pub/Sub API's."""
        fetch = pb.FetchRequest.DESCRIPTOR.fields_by_name
        assert {name: fetch[name].number for name in fetch} == {
            "topic_name": 1,
            "replay_preset": 2,
            "replay_id": 3,
            "num_requested": 4,
            "auth_refresh": 5,
        }
        response = pb.FetchResponse.DESCRIPTOR.fields_by_name
        assert {name: response[name].number for name in response} == {
            "events": 1,
            "latest_replay_id": 2,
            "rpc_id": 3,
            "pending_num_requested": 4,
        }
        consumer = pb.ConsumerEvent.DESCRIPTOR.fields_by_name
        assert (consumer["event"].number, consumer["replay_id"].number) == (1, 2)
        producer = pb.ProducerEvent.DESCRIPTOR.fields_by_name
        assert [producer[n].number for n in ("id", "schema_id", "payload", "headers")] == [
            1,
            2,
            3,
            4,
        ]
        assert (pb.LATEST, pb.EARLIEST, pb.CUSTOM) == (0, 1, 2)
        assert pb.DESCRIPTOR.package == "eventbus.v1"
        assert set(pb.DESCRIPTOR.services_by_name["PubSub"].methods_by_name) >= {
            "Subscribe",
            "GetSchema",
            "GetTopic",
        }

"""``strata up --replicas``: the flag's parsing and its bad inputs (exit 2, one line naming the flag and the
reason), and what the stack builds from it without starting anything: names, ports, logs, shard directories,
the routers' upstream lists, the events topic's partitions, the endpoints file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strata.deploy.cli import app
from strata.deploy.endpoints import Endpoints, write_endpoints
from strata.deploy.replicas import MAX_REPLICAS, Replicas
from strata.deploy.up import Stack
from strata.shared.errors import ConfigError

runner = CliRunner()
FORM = "expected NAME=N[,NAME=N...], e.g. edge=2,streaming=2,processor=2,origin=2"


@pytest.mark.parametrize(("text", "expected"), [
    ("edge=2,streaming=2,processor=2,origin=2", Replicas(2, 2, 2, 2)),
    ("origin=3", Replicas(origin=3)),
    (" processor = 8 , edge=1 ", Replicas(edge=1, processor=8)),
])
def test_parse_any_subset_the_others_stay_one(text: str, expected: Replicas) -> None:
    assert Replicas.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("edge=2,foo=1", "--replicas foo=1: unknown name 'foo'; names: edge, streaming, processor, origin"),
    ("EDGE=2", "--replicas EDGE=2: unknown name 'EDGE'; names: edge, streaming, processor, origin"),
    ("edge=0", "--replicas edge=0: N must be at least 1"),
    ("edge=-1", f"--replicas edge=-1: N must be a whole number from 1 to {MAX_REPLICAS}"),
    ("edge=two", f"--replicas edge=two: N must be a whole number from 1 to {MAX_REPLICAS}"),
    ("edge=1.5", f"--replicas edge=1.5: N must be a whole number from 1 to {MAX_REPLICAS}"),
    ("edge=9", f"--replicas edge=9: at most {MAX_REPLICAS} replicas of a process on one machine"),
    ("edge=2,edge=3", "--replicas 'edge=2,edge=3': edge is given twice"),
    ("edge", f"--replicas 'edge': 'edge' is not NAME=N; {FORM}"),
    ("edge=", f"--replicas 'edge=': 'edge=' is not NAME=N; {FORM}"),
    ("edge=2,,origin=2", f"--replicas 'edge=2,,origin=2': '' is not NAME=N; {FORM}"),
    ("edge:2", f"--replicas 'edge:2': 'edge:2' is not NAME=N; {FORM}"),
    ("", f"--replicas is empty; {FORM}"),
])
def test_bad_input_names_the_flag_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Replicas.parse(text)
    assert str(err.value) == message


def test_the_cli_refuses_bad_replicas_in_one_line_with_exit_2_before_anything_starts(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    result = runner.invoke(app, ["up", "--registry", str(registry), "--replicas", "edge=2,origin=0"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "strata up: bad input: --replicas origin=0: N must be at least 1\n"
    assert not registry.exists()                       # no bundle was exported


def test_names_one_replica_keeps_the_plain_name() -> None:
    r = Replicas(edge=2, origin=3)
    assert r.names("edge") == ["edge-1", "edge-2"] and r.names("streaming") == ["streaming"]
    assert r.names("origin") == ["origin-1", "origin-2", "origin-3"]
    assert r.several and not Replicas().several
    assert str(r) == "edge=2,streaming=1,processor=1,origin=3"


def _built(tmp_path: Path, replicas: Replicas, **kw) -> Stack:
    """A stack with every tier built, nothing started."""
    stack = Stack(tmp_path / "registry", tmp_path / "run", edge_port=18080, replicas=replicas, **kw)
    stack._tiers()
    return stack


def test_every_replica_is_its_own_process_on_its_own_port_and_log(tmp_path: Path) -> None:
    stack = _built(tmp_path, Replicas(2, 2, 2, 2))
    names = ["streaming-1", "streaming-2", "processor-1", "processor-2", "origin-1", "origin-2", "edge-1", "edge-2"]
    assert list(stack.services) == names
    ports = [stack._ports[n] for n in names]
    assert len(set(ports)) == len(ports) and stack._ports["edge-1"] == 18080     # the first edge keeps --port
    for name in names:
        assert stack.services[name].child.log_path == tmp_path / "run" / f"{name}.log"
    argv = {n: stack.services[n].child.argv for n in names}
    assert argv["processor-2"][argv["processor-2"].index("--metrics-port") + 1] == str(stack._ports["processor-2"])
    assert argv["edge-2"][argv["edge-2"].index("--port") + 1] == str(stack._ports["edge-2"])


def test_every_edge_routes_to_every_streaming_service_and_origin(tmp_path: Path) -> None:
    stack = _built(tmp_path, Replicas(edge=2, streaming=2, origin=3))
    streaming = [f"http://127.0.0.1:{stack._ports[f'streaming-{i}']}" for i in (1, 2)]
    origins = [f"http://127.0.0.1:{stack._ports[f'origin-{i}']}" for i in (1, 2, 3)]
    assert stack.urls("streaming") == streaming and stack.urls("origin") == origins
    for name in ("edge-1", "edge-2"):
        env = stack.services[name].child.env
        assert json.loads(env["STRATA_ROUTER__STREAMING_URLS"]) == streaming, name
        assert json.loads(env["STRATA_ROUTER__ORIGIN_URLS"]) == origins, name


def test_router_lists_the_config_names_stand_with_replicas(tmp_path: Path) -> None:
    cfg = tmp_path / "strata.yaml"
    cfg.write_text("router:\n  origin_urls: ['http://10.0.0.5:8091']\n")
    stack = _built(tmp_path, Replicas(edge=2, streaming=2, origin=2), config=cfg)
    env = stack.services["edge-2"].child.env
    assert "STRATA_ROUTER__ORIGIN_URLS" not in env
    assert json.loads(env["STRATA_ROUTER__STREAMING_URLS"]) == stack.urls("streaming")


def test_each_replica_has_its_own_shard_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stack = _built(tmp_path, Replicas(streaming=2, origin=2))
    env = {n: svc.child.env for n, svc in stack.services.items()}
    assert env["streaming-1"]["STRATA_STREAMING__TIER2__VECTOR_INDEX__URL"] == str(run / "tier2-index-1")
    assert env["streaming-2"]["STRATA_STREAMING__TIER2__VECTOR_INDEX__URL"] == str(run / "tier2-index-2")
    assert env["origin-1"]["STRATA_ORIGIN__VECTOR_INDEX__URL"] == str(run / "origin-index-1")
    assert env["origin-2"]["STRATA_ORIGIN__VECTOR_INDEX__URL"] == str(run / "origin-index-2")
    single = _built(tmp_path / "one", Replicas())                      # one replica: the names of before
    assert single.services["origin"].child.env["STRATA_ORIGIN__VECTOR_INDEX__URL"] == str(
        tmp_path / "one" / "run" / "origin-index")


def test_a_configured_shard_directory_gets_one_per_replica(tmp_path: Path) -> None:
    cfg = tmp_path / "strata.yaml"
    cfg.write_text(f"origin:\n  vector_index: {{url: '{tmp_path}/shards/origin'}}\n")
    stack = _built(tmp_path, Replicas(origin=2), config=cfg)
    assert [stack.services[f"origin-{i}"].child.env["STRATA_ORIGIN__VECTOR_INDEX__URL"] for i in (1, 2)] == [
        f"{tmp_path}/shards/origin-1", f"{tmp_path}/shards/origin-2"]
    single = _built(tmp_path / "one", Replicas(), config=cfg)           # one replica: the config's stands
    assert "STRATA_ORIGIN__VECTOR_INDEX__URL" not in single.services["origin"].child.env


def test_the_events_topic_gets_a_partition_per_processor(tmp_path: Path) -> None:
    few = _built(tmp_path, Replicas(processor=4))                      # the default 4 partitions suffice
    assert "STRATA_STREAMING__TOPICS__PARTITIONS" not in few.services["processor-1"].child.env
    many = _built(tmp_path, Replicas(streaming=2, processor=6))        # whoever creates the topic makes 6
    for name in ("streaming-1", "streaming-2", "processor-1", "processor-6"):
        assert many.services[name].child.env["STRATA_STREAMING__TOPICS__PARTITIONS"] == "6", name


def test_a_configured_partition_count_below_the_processors_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "strata.yaml"
    cfg.write_text("streaming:\n  topics: {partitions: 2}\n")
    with pytest.raises(ConfigError) as err:
        Stack(tmp_path / "registry", tmp_path / "run", config=cfg, replicas=Replicas(processor=3))
    assert err.value.reason == ("--replicas processor=3 needs at least 3 partitions of the events topic; "
                                "streaming.topics.partitions is 2")


def test_endpoints_file_keeps_its_keys_and_adds_replicas_only_with_several(tmp_path: Path) -> None:
    base = dict(edge="http://e", streaming="http://s", origin="http://o", store="redis://v/0", broker="b:1")
    one = tmp_path / "one.json"
    write_endpoints(one, Endpoints(**base))
    assert list(json.loads(one.read_text())) == ["edge", "streaming", "origin", "store", "broker"]
    many = tmp_path / "many.json"
    replicas = {"edge": ["http://e", "http://e2"], "streaming": ["http://s"], "processor": ["http://p"],
                "origin": ["http://o"]}
    write_endpoints(many, Endpoints(**base, replicas=replicas))
    data = json.loads(many.read_text())
    assert list(data) == ["edge", "streaming", "origin", "store", "broker", "replicas"]
    assert data["replicas"] == replicas and Endpoints.read(many) == Endpoints(**base, replicas=replicas)

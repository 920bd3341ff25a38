"""API keys: ``strata keys create|list|revoke`` on a real file, stored hashed; the key ring the tiers verify
with (401/403, reload on change, revocation without a restart); binding the key's tenant to the body."""

from __future__ import annotations

import os
import stat
import time

import orjson
import pytest
from typer.testing import CliRunner

from strata.deploy.cli import app
from strata.shared.auth.gate import Gate, KeyRing, bind_tenant, gate_from_settings, warn_auth_off
from strata.shared.auth.keys import create_key, key_digest, read_records, revoke_key
from strata.shared.config import load_settings
from strata.shared.errors import ConfigError, Forbidden, Unauthorized
from strata.shared.serving.error_mapper import error_reply

runner = CliRunner()


def _auth(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]


def test_create_prints_only_the_key_and_stores_only_its_hash(tmp_path) -> None:
    path = tmp_path / "keys.json"
    out = runner.invoke(app, ["keys", "create", "--tenant", "shopA", "--scopes", "recommend,events",
                              "--keys-file", str(path)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("strata_")
    key = lines[0]
    raw = path.read_bytes()
    secret = key.split("_", 2)[2]          # base64url: it may itself start with or hold "_" (1 key in 64 did)
    assert len(secret) == 43 and key.encode() not in raw and secret.encode() not in raw     # neither key nor secret
    (rec,) = read_records(path)
    assert (rec.tenant, rec.scopes, rec.sha256, rec.revoked) == ("shopA", ("recommend", "events"),
                                                                  key_digest(key), None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "shopA", "--scopes", "recommend,root"], "unknown scope(s) root"),
    (["--tenant", "shopA", "--scopes", ","], "name at least one scope"),
    (["--tenant", "a}:b", "--scopes", "recommend"], "tenant must be"),
])
def test_create_refuses_bad_scopes_and_tenants_naming_them(tmp_path, args, message) -> None:
    out = runner.invoke(app, ["keys", "create", *args, "--keys-file", str(tmp_path / "k.json")])
    assert out.exit_code == 2 and message in out.stderr
    assert out.stdout == "" and not (tmp_path / "k.json").exists()


def test_keys_file_comes_from_the_env_when_no_flag(tmp_path, monkeypatch) -> None:
    path = tmp_path / "env-keys.json"
    monkeypatch.setenv("STRATA_AUTH__KEYS_FILE", str(path))
    out = runner.invoke(app, ["keys", "create", "--tenant", "t1", "--scopes", "admin"])
    assert out.exit_code == 0, out.output
    assert [r.tenant for r in read_records(path)] == ["t1"]


def test_list_shows_ids_tenants_scopes_never_keys_and_revoke_marks_the_record(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key_a, rec_a = create_key(path, "shopA", ("recommend",))
    _, rec_p = create_key(path, "shopA", ("recommend", "events"), pop="fra1", name="edge worker fra1")
    out = runner.invoke(app, ["keys", "revoke", rec_a.id, "--keys-file", str(path)])
    assert out.exit_code == 0, out.output
    listed = runner.invoke(app, ["keys", "list", "--json", "--keys-file", str(path)])
    doc = orjson.loads(listed.stdout)["keys"]
    assert [(k["id"], k["tenant"], k["pop"], k["revoked"] is not None) for k in doc] == \
        [(rec_a.id, "shopA", None, True), (rec_p.id, "shopA", "fra1", False)]
    assert key_a not in listed.stdout and rec_a.sha256 not in listed.stdout
    table = runner.invoke(app, ["keys", "list", "--keys-file", str(path)])
    assert rec_p.id in table.stdout and "fra1" in table.stdout
    missing = runner.invoke(app, ["keys", "revoke", "000000000000", "--keys-file", str(path)])
    assert missing.exit_code == 1 and "no key '000000000000'" in missing.stderr


def test_gate_401_403_and_the_callers_tenant(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, rec = create_key(path, "shopA", ("recommend",))
    gate = Gate(KeyRing(path))
    caller = gate.admit(_auth(key), ("10.0.0.1", 5), "recommend")
    assert (caller.tenant, caller.key_id) == ("shopA", rec.id) and key not in repr(caller)
    for headers, reason in [([], "an API key is required"), ([(b"authorization", b"Basic Zm9v")], "Bearer"),
                            (_auth(key[:-1] + ("A" if key[-1] != "A" else "B")), "unknown or revoked key"),
                            (_auth("strata_nothex_x"), "unknown or revoked key")]:
        with pytest.raises(Unauthorized) as err:
            gate.admit(headers, None, "recommend")
        assert reason in err.value.reason and err.value.field == "Authorization"
    with pytest.raises(Forbidden, match="lacks scope 'events'"):
        gate.admit(_auth(key), None, "events")
    reply = error_reply(Unauthorized("unknown or revoked key", field="Authorization"))
    assert reply.status == 401 and (b"www-authenticate", b'Bearer realm="strata"') in reply.headers
    assert orjson.loads(reply.body) == {"error": {"code": "unauthorized", "reason": "unknown or revoked key",
                                                  "field": "Authorization"}, "retriable": False}
    assert b'strata_auth_refused_total{reason="unknown_key",status="401"} 2.0' in gate.exposition()
    assert b'strata_auth_admitted_total{tenant="shopA"} 1.0' in gate.exposition()


def test_a_verified_authorization_value_is_not_parsed_or_hashed_again(tmp_path, monkeypatch) -> None:
    """The request path's cost: one dict lookup by the header's raw bytes once a value was verified; another
    spelling of the same key is verified on its own, and a revoked key's memo goes with the reload."""
    import strata.shared.auth.gate as gate_mod

    path = tmp_path / "keys.json"
    key, rec = create_key(path, "shopA", ("recommend",))
    hashed = []
    monkeypatch.setattr(gate_mod, "key_digest", lambda token: hashed.append(token) or key_digest(token))
    ring = KeyRing(path, reload_s=0.05)
    gate = Gate(ring)
    for _ in range(3):
        assert gate.admit(_auth(key), None, "recommend").tenant == "shopA"
    assert len(hashed) == 1
    assert gate.admit([(b"authorization", f"bearer  {key} ".encode())], None, "recommend").key_id == rec.id
    assert len(hashed) == 2
    revoke_key(path, rec.id)
    assert _eventually(lambda: ring.known(_auth(key)[1][1]) is None)
    with pytest.raises(Unauthorized, match="unknown or revoked key"):
        gate.admit(_auth(key), None, "recommend")


def _eventually(cond, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_revoked_key_is_refused_after_the_reload_interval_without_a_restart(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, rec = create_key(path, "shopA", ("recommend",))
    ring = KeyRing(path, reload_s=0.05)
    assert ring.caller(key.encode()) is not None          # remembered
    revoke_key(path, rec.id)
    assert _eventually(lambda: ring.caller(key.encode()) is None)
    key2, _ = create_key(path, "shopB", ("events",))       # a new key works without a restart too
    assert _eventually(lambda: ring.caller(key2.encode()) is not None)
    assert ring.caller(key2.encode()).tenant == "shopB"


def test_a_broken_keys_file_keeps_the_keys_in_force(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "shopA", ("recommend",))
    ring = KeyRing(path, reload_s=0.01)
    path.write_text("{not json")
    time.sleep(0.05)
    assert ring.refresh() is False                         # unreadable: not taken
    assert ring.caller(key.encode()).tenant == "shopA"


def test_bind_tenant_fills_the_keys_tenant_and_refuses_another() -> None:
    from strata.shared.auth.gate import Caller

    a = Caller("shopA", "k", frozenset({"recommend"}), None, b"")
    body: dict = {"user_id": "u"}
    bind_tenant(body, a)
    assert body["tenant"] == "shopA"
    bind_tenant({"tenant": "shopA"}, a)
    with pytest.raises(Forbidden) as err:
        bind_tenant({"tenant": "shopB"}, a)
    assert err.value.field == "tenant" and err.value.status == 403 and "'shopB'" in err.value.reason
    bind_tenant({"tenant": "shopB"}, None)                # auth off: the body says


def test_auth_is_off_by_default_and_says_so_once_when_serving(caplog, monkeypatch) -> None:
    import strata.shared.auth.gate as gate_mod

    monkeypatch.setattr(gate_mod, "_warned", set())
    assert load_settings().auth.enabled is False
    with caplog.at_level("WARNING"):
        assert gate_from_settings(load_settings(), "svc-x") is None      # building it says nothing (yet)
        assert not [r for r in caplog.records if "auth.enabled is false" in r.getMessage()]
        warn_auth_off("svc-x")                                          # what a tier's start calls
        warn_auth_off("svc-x")
    warnings = [r for r in caplog.records if "auth.enabled is false" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING" and "svc-x" in warnings[0].getMessage()


def test_gate_from_settings_with_auth_on_needs_a_keys_file_and_a_secret(tmp_path, monkeypatch) -> None:
    path = tmp_path / "keys.json"
    monkeypatch.setenv("STRATA_AUTH__ENABLED", "true")
    monkeypatch.setenv("STRATA_AUTH__KEYS_FILE", str(path))
    with pytest.raises(ConfigError) as err:
        gate_from_settings(load_settings(), "svc")
    assert err.value.field == "auth.impression_secret"
    monkeypatch.setenv("STRATA_AUTH__IMPRESSION_SECRET", "s" * 32)
    with pytest.raises(ConfigError) as err:
        gate_from_settings(load_settings(), "svc")
    assert err.value.field == "auth.keys_file" and "strata keys create" in err.value.reason
    create_key(path, "t", ("recommend",))
    gate = gate_from_settings(load_settings(), "svc")
    assert gate is not None and gate.keys is not None and gate.limiter is None

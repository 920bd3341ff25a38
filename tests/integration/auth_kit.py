"""Keys and settings for the tests of ``shared.auth`` on every tier: one keys file with keys of two tenants,
auth switched on through the documented environment variables."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from strata.shared.auth.keys import create_key, revoke_key

SECRET = "test-impression-secret-0123456789abcdef"
ALL = ("recommend", "events", "explain")


@dataclass
class Keys:
    path: Path
    a: str                 # shopA: recommend, events, explain
    b: str                 # shopB: the same
    a_recommend: str       # shopA: recommend only
    a_catalog: str         # shopA (the catalog's tenant): catalog:write
    b_catalog: str         # shopB: catalog:write (not the catalog's tenant)
    a_admin: str           # shopA: admin
    b_admin: str           # shopB: admin
    revoked: str           # shopA, every scope, revoked


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def make_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keys:
    """Keys of shopA and shopB; ``STRATA_AUTH__*`` set so every ``load_settings`` of the test has auth on."""
    path = tmp_path / "keys.json"

    def new(tenant: str, *scopes: str) -> str:
        return create_key(path, tenant, scopes)[0]

    keys = Keys(path, new("shopA", *ALL), new("shopB", *ALL), new("shopA", "recommend"),
                new("shopA", "catalog:write"), new("shopB", "catalog:write"), new("shopA", "admin"),
                new("shopB", "admin"), "")
    keys.revoked, rec = create_key(path, "shopA", (*ALL, "admin", "catalog:write"))
    revoke_key(path, rec.id)
    monkeypatch.setenv("STRATA_AUTH__ENABLED", "true")
    monkeypatch.setenv("STRATA_AUTH__KEYS_FILE", str(path))
    monkeypatch.setenv("STRATA_AUTH__IMPRESSION_SECRET", SECRET)
    monkeypatch.setenv("STRATA_AUTH__CATALOG_TENANT", "shopA")
    return keys


def assert_refused(resp, status: int, field: str, reason: str) -> None:
    """The project's error shape, with the status, the field and (part of) the reason."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["field"] == field and reason in body["error"]["reason"], body
    assert body["error"]["code"] == {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}[status]
    assert body["retriable"] is (status == 429)
    if status == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")


@contextlib.asynccontextmanager
async def streaming_app(cfg, **sections) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The streaming service's app (ingest + tier 2) behind its gate, as ``strata streaming serve`` builds it, with
    ``sections`` of settings (e.g. ``rate_limit={...}``); yields (client, the tier-2 service)."""
    from strata.shared.auth.gate import gate_from_settings
    from strata.shared.config import load_settings
    from strata.streaming.app import build_app
    from strata.streaming.service import IngestService
    from strata.streaming.tier2.service import Tier2Service

    settings = load_settings(streaming=cfg.model_dump(mode="json"), **sections)
    svc, t2 = IngestService(settings.streaming), Tier2Service(settings)
    await svc.start()
    await t2.start()
    try:
        app = build_app(svc, t2, gate_from_settings(settings, "the streaming service"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t2", timeout=30) as c:
            yield c, t2
    finally:
        await t2.stop()
        await svc.stop()

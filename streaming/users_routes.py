"""``DELETE /v1/users/{user_id}`` and ``GET /v1/users/{user_id}/data`` on the streaming service (``streaming.users``).

Scope ``admin``; the tenant is the key's (a ``tenant`` query parameter naming another is 403). With auth off they
refuse every call (403): erasing or exporting anyone's data is not something an open route may do.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from strata.shared.auth.gate import Gate
from strata.shared.auth.scopes import ADMIN
from strata.shared.contracts.api import MAX_ID_LEN
from strata.shared.errors import Forbidden, InvalidField, ServiceUnavailable
from strata.shared.serving.codecs import JSON, choose_response_type, encode
from strata.streaming.users import UserData


def _who(request: Request, gate: Gate | None, tenant: str | None) -> tuple[str, str | None]:
    """(tenant, key id) of an admin call."""
    if gate is None or gate.keys is None:
        raise Forbidden("the user data routes need API keys (auth.enabled, a key with scope 'admin')",
                        field="Authorization")
    caller = gate.admit(request.scope["headers"], request.scope.get("client"), ADMIN)
    if tenant is not None and (not tenant or len(tenant) > MAX_ID_LEN):
        raise InvalidField(f"must be 1..{MAX_ID_LEN} characters", field="tenant")
    if tenant is not None and tenant != caller.tenant:
        raise Forbidden(f"the key belongs to tenant {caller.tenant!r}, not {tenant[:48]!r}", field="tenant")
    return caller.tenant, caller.key_id


def _user(user_id: str) -> str:
    if not user_id or len(user_id) > MAX_ID_LEN:
        raise InvalidField(f"must be 1..{MAX_ID_LEN} characters", field="user_id")
    return user_id


def _answer(request: Request, body: dict) -> Response:
    media = choose_response_type(request.headers.get("accept"), JSON)
    return Response(encode(body, media), media_type=media)


def mount_users(api: Any, users: UserData, gate: Gate | None) -> None:
    def ready() -> None:
        if not users.configured:
            raise ServiceUnavailable("no online store is configured (streaming.store)", field="streaming.store")

    @api.delete("/v1/users/{user_id}")
    async def erase(user_id: str, request: Request, tenant: str | None = None) -> Response:
        """Erase the user from every store (sessions, profile, purchases, carts, queued triggers, caches through
        invalidation) and leave a tombstone so events of the erased history arriving later are dropped."""
        who_tenant, key_id = _who(request, gate, tenant)
        ready()
        return _answer(request, await users.erase(who_tenant, _user(user_id), key_id))

    @api.get("/v1/users/{user_id}/data")
    async def export(user_id: str, request: Request, tenant: str | None = None) -> Response:
        """Everything the streaming tier holds about the user: profile, purchases, sessions (vectors, recent
        items), whether it was erased."""
        who_tenant, key_id = _who(request, gate, tenant)
        ready()
        return _answer(request, await users.export(who_tenant, _user(user_id), key_id))

"""``strata keys create|list|revoke``: API keys per tenant with scopes, stored hashed in ``auth.keys_file``.

``create`` prints the new key as its only stdout line (nothing else is ever able to show it again); what it
made goes to stderr. ``--keys-file`` defaults to the config's ``auth.keys_file`` (env STRATA_AUTH__KEYS_FILE).
Serving processes re-read the file when it changes: a revoked key stops working within ``auth.reload_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from strata.shared.auth.scopes import SCOPES

keys_app = typer.Typer(help="API keys per tenant with scopes (auth.keys_file, stored hashed).",
                       no_args_is_help=True)
_FILE_HELP = "keys file; default: auth.keys_file of the config (env STRATA_AUTH__KEYS_FILE)"


def _keys_file(explicit: Path | None, config: Path | None) -> Path:
    if explicit is not None:
        return explicit
    from strata.shared.config import load_settings

    return Path(load_settings(config).auth.keys_file)


def _bad(command: str, reason: str, code: int = 2) -> typer.Exit:
    print(f"strata keys {command}: {reason}", file=sys.stderr)
    return typer.Exit(code)


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant the key acts for (the only one it can "
                                        "read or write)")],
    scopes: Annotated[str, typer.Option("--scopes", help=f"comma-separated: {', '.join(SCOPES)}")],
    keys_file: Annotated[Path | None, typer.Option("--keys-file", help=_FILE_HELP)] = None,
    pop: Annotated[str | None, typer.Option("--pop", help="make a PoP key for the edge worker of this point "
                                            "of presence (its X-Forwarded-For is trusted for per-address "
                                            "limits)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="a label shown by 'strata keys list'")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
) -> None:
    """Make a key; print it (the only stdout line). The file keeps only its SHA-256."""
    from strata.shared.auth.keys import create_key
    from strata.shared.auth.scopes import parse_scopes
    from strata.shared.errors import StrataError

    try:
        path = _keys_file(keys_file, config)
        key, rec = create_key(path, tenant, parse_scopes(scopes), pop=pop, name=name)
    except ValueError as exc:
        raise _bad("create", str(exc)) from None
    except StrataError as exc:
        raise _bad("create", exc.reason) from None
    print(key, flush=True)
    print(f"key {rec.id} for tenant {rec.tenant} (scopes {','.join(rec.scopes)}"
          f"{', PoP ' + rec.pop if rec.pop else ''}) added to {path}; it is not shown again", file=sys.stderr)


@keys_app.command("list")
def list_keys(
    keys_file: Annotated[Path | None, typer.Option("--keys-file", help=_FILE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of a table")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
) -> None:
    """Every key's id, tenant, scopes, PoP, dates (never the key or its hash)."""
    from strata.shared.auth.keys import read_records
    from strata.shared.errors import StrataError

    try:
        records = read_records(_keys_file(keys_file, config))
    except StrataError as exc:
        raise _bad("list", exc.reason) from None
    rows = [{"id": r.id, "tenant": r.tenant, "scopes": list(r.scopes), "pop": r.pop, "name": r.name,
             "created": r.created, "revoked": r.revoked} for r in records]
    if as_json:
        print(orjson.dumps({"keys": rows}, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "tenant", "scopes", "pop", "name", "created", "revoked")
    for r in rows:
        table.add_row(r["id"], r["tenant"], ",".join(r["scopes"]), r["pop"] or "", r["name"] or "", r["created"],
                      r["revoked"] or "")
    Console(width=160).print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (the 12 hex digits after 'strata_'; see 'strata "
                                          "keys list')")],
    keys_file: Annotated[Path | None, typer.Option("--keys-file", help=_FILE_HELP)] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
) -> None:
    """Revoke a key (its record stays, with the time); serving processes refuse it within auth.reload_s."""
    from strata.shared.auth.keys import revoke_key
    from strata.shared.errors import StrataError

    try:
        path = _keys_file(keys_file, config)
        rec = revoke_key(path, key_id)
    except KeyError:
        raise _bad("revoke", f"no key {key_id!r} in {path}", 1) from None
    except StrataError as exc:
        raise _bad("revoke", exc.reason) from None
    print(f"key {rec.id} of tenant {rec.tenant} revoked at {rec.revoked}", file=sys.stderr)

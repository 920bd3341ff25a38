"""``python -m model_export --out DIR``: export the edge-scorer bundle into a registry directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from strata.model_export.export import export_bundle
from strata.shared.errors import StrataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="registry root; bundle lands in OUT/edge-scorer/")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-items", type=int, default=12_000)
    parser.add_argument("--version", default=None, help="X.Y.Z (default: next patch after the highest)")
    parser.add_argument("--no-int8", action="store_true", help="skip the dynamic-int8 variant")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = export_bundle(args.out, seed=args.seed, n_items=args.n_items, version=args.version,
                               int8=not args.no_int8)
    except StrataError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bundle_dir": str(result.bundle_dir), "version": result.version,
                      "seconds": result.seconds, "parity": result.parity, "metrics": result.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recall and precision per PII kind on the labelled set (``labelled.json`` beside this file), for the origin's
redactor and, on the same set, for Presidio's stock pattern recognizers alone.

    python -m strata.origin.pii.measure [--json PATH]

- recall of a kind: of the labelled secrets of that kind, the share the redactor removed entirely (covered by its
  findings of any kind: what matters is that the secret never reaches the prompt);
- precision of a kind: of the redactor's findings of that kind, the share that overlap a labelled secret.
Each record is ``{"text": ..., "pii": [[secret, kind], ...]}``; a record with no ``pii`` is shop text that must
stay untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from strata.origin.pii.redactor import KIND, KINDS, PiiRedactor, normalise

LABELLED = Path(__file__).with_name("labelled.json")
# what the stock recognizers below report, as our kinds
_STOCK_KIND = {"DATE_TIME": "dob", "US_PASSPORT": "passport", "UK_POSTCODE": "address", "EMAIL_ADDRESS": "email"}


def load(path: Path = LABELLED) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def score(redactor: PiiRedactor, records: list[dict]) -> dict[str, Any]:
    """Per kind: labelled, recalled, found, correct, recall, precision; plus ``missed`` and ``false`` examples."""
    labelled: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    found: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    missed: list = []
    false: list = []
    for rec in records:
        text = normalise(rec["text"])
        gold = []
        for secret, kind in rec["pii"]:
            s = normalise(secret)
            start = text.find(s)
            if start < 0:
                raise ValueError(f"labelled secret {secret!r} is not in {rec['text']!r}")
            gold.append((start, start + len(s), kind))
        pred = redactor.spans(text)
        for gs, ge, kind in gold:
            labelled[kind] += 1
            covered = sum(max(0, min(e, ge) - max(s, gs)) for s, e, _ in pred)
            if covered >= ge - gs:
                recalled[kind] += 1
            else:
                missed.append((kind, rec["text"]))
        for ps, pe, kind in pred:
            found[kind] += 1
            if any(ps < ge and gs < pe for gs, ge, _ in gold):
                correct[kind] += 1
            else:
                false.append((kind, text[ps:pe], rec["text"]))
    out: dict[str, Any] = {}
    for kind in sorted(set(labelled) | set(found), key=lambda k: KINDS.index(k) if k in KINDS else 99):
        out[kind] = {"labelled": labelled[kind], "recalled": recalled[kind], "found": found[kind],
                     "correct": correct[kind],
                     "recall": recalled[kind] / labelled[kind] if labelled[kind] else None,
                     "precision": correct[kind] / found[kind] if found[kind] else None}
    out["_missed"], out["_false"] = missed, false
    return out


def stock_redactor() -> PiiRedactor:
    """Presidio's stock pattern recognizers only (what it finds without an NLP model), for comparison."""
    from strata.origin.pii.presidio import predefined_recognizers as p
    from strata.origin.pii.redactor import stock_recognizers

    KIND.update({k: v for k, v in _STOCK_KIND.items() if k not in KIND})
    return PiiRedactor(recognizers=stock_recognizers(("GB", "US", "DE", "FR", "NL", "IE", "IN"))
                       + [p.DateRecognizer(), p.UsPassportRecognizer(), p.UkPostcodeRecognizer()])


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    records = load()
    ours, stock = score(PiiRedactor(), records), score(stock_redactor(), records)
    n_pos = sum(1 for r in records if r["pii"])
    print(f"labelled set: {len(records)} texts ({n_pos} with PII, {len(records) - n_pos} shop texts without), "
          f"{sum(len(r['pii']) for r in records)} secrets")
    print(f"{'kind':12s} {'n':>3s} | {'recall':>6s} {'precision':>9s} | {'stock recall':>12s} {'stock precision':>15s}")
    for kind in KINDS:
        o, s = ours.get(kind), stock.get(kind, {})
        if o is None:
            continue
        print(f"{kind:12s} {o['labelled']:3d} | {_pct(o['recall']):>6s} {_pct(o['precision']):>9s} | "
              f"{_pct(s.get('recall')):>12s} {_pct(s.get('precision')):>15s}")
    tot = {k: sum(v[k] for kk, v in ours.items() if not kk.startswith("_")) for k in ("labelled", "recalled", "found", "correct")}
    print(f"{'all':12s} {tot['labelled']:3d} | {_pct(tot['recalled'] / tot['labelled']):>6s} "
          f"{_pct(tot['correct'] / max(1, tot['found'])):>9s}")
    for kind, text in ours["_missed"]:
        print(f"  missed {kind:11s} in {text!r}")
    for kind, span, text in ours["_false"]:
        print(f"  false  {kind:11s} {span!r} in {text!r}")
    if args.json:
        args.json.write_text(json.dumps({"ours": {k: v for k, v in ours.items() if not k.startswith("_")},
                                         "stock": {k: v for k, v in stock.items() if not k.startswith("_")}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

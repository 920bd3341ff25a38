"""The labelled PII set and its measurement: every kind the redactor must cover is labelled, each kind's recall
and precision hold a floor, and ``python -m strata.origin.pii.measure`` prints the table."""

from __future__ import annotations

import pytest

from strata.origin.pii import measure
from strata.origin.pii.redactor import KINDS, normalise, shared_redactor

REQUIRED = {"ssn", "dob", "national_id", "passport", "ip", "cvv", "expiry", "card", "email", "address", "person"}


@pytest.fixture(scope="module")
def scores() -> dict:
    return measure.score(shared_redactor(), measure.load())


def test_the_set_labels_every_kind_and_shop_text_without_pii() -> None:
    records = measure.load()
    kinds = {k for r in records for _, k in r["pii"]}
    assert REQUIRED <= kinds <= set(KINDS)
    assert sum(1 for r in records if not r["pii"]) >= 40


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_recall_and_precision_per_kind(scores, kind) -> None:
    s = scores[kind]
    assert s["recall"] >= (0.75 if kind == "person" else 0.95), s
    assert s["precision"] >= (0.7 if kind == "person" else 0.75), s


def test_redaction_keeps_shop_text(scores) -> None:
    false = scores["_false"]
    assert len(false) <= 5, false


def test_full_width_and_invisible_characters_are_normalised() -> None:
    assert normalise("４１１１\u200b１１１１") == "41111111"
    assert shared_redactor().redact("card ４１１１\u200b１１１１\u200b１１１１\u200b１１１１").text == "card [CARD]"


def test_the_command_prints_recall_and_precision_per_kind(capsys, tmp_path) -> None:
    assert measure.main(["--json", str(tmp_path / "pii.json")]) == 0
    out = capsys.readouterr().out
    for kind in REQUIRED:
        assert any(line.startswith(kind) for line in out.splitlines()), kind
    assert "recall" in out and "precision" in out and (tmp_path / "pii.json").exists()

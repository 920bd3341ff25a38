"""The PII corpus: every positive is fully redacted (the secret is gone, the right kind counted); no negative
is touched (shop text full of numbers that look like PII but fail a checksum or a number plan)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.origin.pii.redactor import shared_redactor

R = shared_redactor()

# (text, the PII substring that must disappear, kind)
POSITIVES = [
    ("email me at jane.doe+shop@example.co.uk please", "jane.doe+shop@example.co.uk", "email"),
    ("JOHN_SMITH@Mail.Example.com is my address", "JOHN_SMITH@Mail.Example.com", "email"),
    ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "card"),
    ("pay with 5500-0000-0000-0004", "5500-0000-0000-0004", "card"),
    ("amex 378282246310005 thanks", "378282246310005", "card"),
    ("my IBAN is GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", "iban"),
    ("refund to DE89370400440532013000", "DE89370400440532013000", "iban"),
    ("iban fr1420041010050500013m02606", "fr1420041010050500013m02606", "iban"),
    ("call me on 020 7946 0958 tonight", "020 7946 0958", "phone"),
    ("mobile 07911 123456", "07911 123456", "phone"),
    ("US: +1 415-555-2671", "415-555-2671", "phone"),
    ("ring (212) 555-0147 after 5", "555-0147", "phone"),
    ("Paris office +33 1 42 68 53 00", "42 68 53 00", "phone"),
    ("deliver to 221B Baker Street, London", "221B Baker Street", "address"),
    ("ship to 1600 Pennsylvania Avenue NW", "1600 Pennsylvania Avenue NW", "address"),
    ("I'm at Flat 4, 22 Acacia Road", "22 Acacia Road", "address"),
    ("postcode SW1A 1AA", "SW1A 1AA", "address"),
    ("42 Wallaby Way, Sydney", "42 Wallaby Way", "address"),
]

NEGATIVES = [
    "order 1234 5678 9012 3456 did not arrive",        # 16 digits, Luhn fails
    "GB82 WEST 1234 5698 7654 33 is a typo",            # IBAN checksum fails
    "ISBN 978-3-16-148410-0 cookbook",
    "EAN 4006381333931 on the box",
    "price £12.99, 2 for £20, pack of 24",
    "size 42 trainers, UK 8",
    "delivered on 2024-01-05 at 10:30",
    "SKU-000123 and SKU-004567 please",
    "gluten free bread near Baker Street station",
    "a vegan gift under 30 pounds for my dad",
    "iPhone 15 Pro 256GB case",
    "order ref 20240105 and invoice 55501",
    "24 pack 330ml cans of lager",
    "street food cookbook with 100 recipes",
    "I need 3 new road bikes",
    "looking for a 2 person tent",
    "email campaign about phones",
    "zip 94105",
]


@pytest.mark.parametrize(("text", "secret", "kind"), POSITIVES)
def test_positives_are_redacted(text: str, secret: str, kind: str) -> None:
    out = R.redact(text)
    assert secret not in out.text
    assert out.found.get(kind, 0) >= 1, out
    assert f"[{kind.upper()}]" in out.text


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives_are_left_alone(text: str) -> None:
    out = R.redact(text)
    assert out.text == text
    assert out.clean


def test_several_kinds_in_one_text_are_counted_by_kind() -> None:
    out = R.redact("Jane, jane@example.com, 07911 123456, card 4111111111111111, 10 Downing Street")
    assert out.text == "Jane, [EMAIL], [PHONE], card [CARD], [ADDRESS]"
    assert out.found == {"email": 1, "phone": 1, "card": 1, "address": 1}


def test_the_redactor_loads_neither_torch_nor_transformers_and_leaves_them_importable() -> None:
    """Presidio's package imports its Hugging Face engine, which imports transformers and torch when installed (as
    in a venv that also trains): the origin is a serving process (no torch), and it started 4 s slower with them."""
    code = ("import sys\n"
            "from strata.origin.pii.redactor import shared_redactor\n"
            "r = shared_redactor().redact('card 4111 1111 1111 1111')\n"
            "assert r.found == {'card': 1}, r\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
            "import torch\n"                        # the marks are gone: whatever needs torch later still gets it
            "print(torch.tensor([1.0]).sum().item())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["[]", "1.0"], proc.stdout

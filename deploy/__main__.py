"""``python -m deploy`` runs the ``strata`` CLI (used when the console script is not installed)."""

from strata.deploy.cli import app

app()

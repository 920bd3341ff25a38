"""``python -m deploy`` runs the ``strata`` CLI (used when the console script is not installed)."""

from deploy.cli import app

app()

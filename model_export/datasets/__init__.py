"""Loaders for real interaction logs. Optional: nothing in the export pipeline requires them."""

"""Baseline servers for `strata bench edge`: the same bundle served the straightforward way."""

"""Training side of Strata: synthetic world, edge-scorer training, ONNX export, parity gate, registry.

Imports only ``shared`` (plus third-party); torch lives here and nowhere in the serving tiers.
"""

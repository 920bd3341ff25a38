"""``strata simulate``: a closed loop of simulated shoppers with known tastes on the running system (docs/simulation.md)."""

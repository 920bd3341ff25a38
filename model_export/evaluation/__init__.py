"""Offline evaluation on real purchases: temporal split, baselines, ranking metrics, Recall@K plot.

``harness.evaluate_online_retail`` is the whole run behind ``strata eval``; ``protocol.Recommender`` is
what a model implements to take part; ``models.RECOMMENDERS`` names the models.
"""

"""Evaluation: the playlist-completion protocol, metrics, baselines, results and reports."""

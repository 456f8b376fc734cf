"""Workstation tools: dataset features, head training, evaluation and conversion for edgevid."""

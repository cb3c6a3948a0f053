"""Dependency contracts: the model, the YAML loader with file:line errors, the checker."""

"""Recall models, one per file."""

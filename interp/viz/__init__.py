"""Figures and the HTML report primitives."""

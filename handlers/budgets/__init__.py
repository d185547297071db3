"""Deciders of token budgets."""

"""Deciders of the coordination domain."""

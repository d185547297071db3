"""Deciders of the activity domain."""

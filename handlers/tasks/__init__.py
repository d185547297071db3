"""Deciders of the task queue."""

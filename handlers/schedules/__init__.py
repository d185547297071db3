"""Deciders of schedules."""

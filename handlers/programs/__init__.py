"""Deciders of agent programs."""

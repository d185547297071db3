"""The tokens domain: its event types (`events`) and pure rules."""

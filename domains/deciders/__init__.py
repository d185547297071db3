"""The deciders domain: its event types (`events`) and pure rules."""

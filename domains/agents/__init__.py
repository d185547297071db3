"""The agents domain: its event types (`events`) and pure rules."""

"""The timers domain: its event types (`events`) and pure rules."""

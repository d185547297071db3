"""Agent programs (seed 003's agent lifecycle): agents registered with a command line that agentlog starts, stops
and restarts — their event types (`events`) and the one rule of what happens to a program next (`lifecycle`)."""

"""Status inference (seed 002): whether a registered agent is active, idle (silent for 10 minutes) or offline
(silent for an hour), inferred from what it does and from timers (`status`), recorded as `AgentStatusInferred`
on its registry entry (`events`)."""

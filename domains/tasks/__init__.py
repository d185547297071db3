"""Tasks: a queue of work for agents as events — their event types (`events`), the lifecycle every command and
event of one task is checked by (`lifecycle`), dependencies between tasks (`dependencies`), retry back-off
(`backoff`) and what agents may read and cancel of others' tasks (`access`). The dispatcher decider
(`handlers.tasks.dispatcher`) and the API decide with the same rules."""

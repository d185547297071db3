"""Schedules: cron expressions that create tasks or post to the chat, as events — their event types (`events`),
the cron arithmetic in a time zone (`cron`), the fold of one schedule's stream and the commands people give it
(`schedule`), and the rules of firing: which slot is due, what a late wake-up catches up, what an overlap does
(`rules`). The scheduler decider (`handlers.schedules.scheduler`) and the API decide with the same rules."""

"""Token budgets: a global daily budget and per-agent ones — their events (`events`), the period a moment falls in
(`periods`) and the reservation rule that cannot overspend (`ledger`)."""

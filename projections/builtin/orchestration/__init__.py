"""Read models of orchestration: tasks and token budgets."""

"""An example agentlog plugin: orders placed and cancelled, totals per customer, a projection and a report."""

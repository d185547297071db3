-- The two report views of 0003 that had no description.

COMMENT ON VIEW reports.agent_system_stats IS
    'The agent system now, in one row: agents in total and by status, documents active, workers'' memory, LLM calls and places marked.';
COMMENT ON VIEW reports.documents_now IS
    'Each document: people present, active or idle since when, and its latest agent with that agent''s status.';

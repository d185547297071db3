-- Named SQL of the agent_metrics projection (loaded by `agent_metrics.py`). The table is unqualified: the runner
-- points search_path at the live schema, a rebuild at its shadow.

-- insert_metrics --
-- A batch's metrics reports, one row each (a report seen again is kept once).
-- $1 global positions, $2 agent ids, $3 document ids, $4 memory (MB), $5 CPU (percent), $6 LLM calls,
-- $7 places marked, $8 websocket latencies (ms), $9 LLM response times (ms), $10 recorded at
INSERT INTO agent_metrics (global_position, agent_id, document_id, memory_mb, cpu_percent, llm_calls,
                           locations_marked, websocket_latency_ms, llm_response_time_ms, recorded_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::bigint[], $7::bigint[],
                     $8::float8[], $9::float8[], $10::timestamptz[])
ON CONFLICT (global_position) DO NOTHING;

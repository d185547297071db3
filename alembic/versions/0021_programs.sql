-- Agent programs (issue 13 item 2): the read model of the programs the runner starts and stops, and a report.
--
-- A projection: every row is derived from the program events (domains/programs) and rebuilt by `agentlog
-- replay`. Nothing is decided from it: the program keeper decides from its own fold of the log, the API folds
-- the program's stream and appends at the version it folded, the runner reconciles against the streams.

CREATE TABLE projections.programs (
    agent_id        text        PRIMARY KEY,
    status          text        NOT NULL,   -- stopped, starting, running, stopping, error
    command         jsonb       NOT NULL,   -- the command line, one string per argument
    max_restarts    integer     NOT NULL,
    run             integer     NOT NULL,   -- the latest run started (0: never)
    restart         integer     NOT NULL,   -- automatic restarts in a row behind the current run
    pid             integer,                -- the current run's process, while it runs
    host            text        NOT NULL,   -- where it runs (or ran last)
    last_exit_code  integer,
    reason          text        NOT NULL,   -- why it last stopped or errored
    runs_started    bigint      NOT NULL,
    crashes         bigint      NOT NULL,   -- runs that ended while nobody asked them to (not a runner leaving)
    started_at      timestamptz,            -- the current run's process start, as recorded
    updated_at      timestamptz NOT NULL,
    state           jsonb       NOT NULL    -- the domain's fold, which the projection folds on from
);
CREATE INDEX programs_status_idx ON projections.programs (status, agent_id);
COMMENT ON TABLE projections.programs IS
    'Agent programs: command line, lifecycle status, current run and process, restarts, crashes, last exit.';

CREATE VIEW reports.programs AS
SELECT agent_id, status, run, restart, pid, host, last_exit_code, reason, runs_started, crashes, started_at,
       updated_at
  FROM projections.programs
 ORDER BY agent_id;
COMMENT ON VIEW reports.programs IS
    'Agent programs: status, current run, process and host, restarts in a row, crashes, the last exit and why.';

"""Read models derived from the log: one module per projection (its tables and its apply), rebuilt by replay.

The projection framework, the first projections and the replay tool arrive with the projections issue; the
handler runner in `handlers` already gives them what they stand on: batches in canonical order, applied in one
transaction with the checkpoint.
"""

"""The audit trail: one event per state change, hash-chained after commit, signed checkpoints."""

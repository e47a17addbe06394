"""Evidence: raw captures, the hash-chained observation log, daily roots (docs/evidence.md)."""

"""Testing helpers for sod2 and its users: corpora, round trips, hypothesis strategies."""

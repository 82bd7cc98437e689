"""Transformations of the IR, each a registered pass: cleanup, folding, ordering, and later
fusion and memory planning."""

"""The SSH edge: pinned host keys, pooled connections, bounded fan-out, atomic uploads."""

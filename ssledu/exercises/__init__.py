"""Auto-checked exercises, one module per chapter (registered with ``ssledu.check``)."""

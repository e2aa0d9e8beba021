"""The ``gonets`` command: one entry point for every role."""

"""Hotline service: composition root, CLI, persistence and logging for the 12345 hotline."""

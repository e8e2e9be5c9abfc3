"""Durable stores behind ``IStore``: SQLite (embedded default) and, later, Redis."""

"""SQLite providers for wfe."""

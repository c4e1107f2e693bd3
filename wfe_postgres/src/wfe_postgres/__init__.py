"""PostgreSQL providers for wfe."""

"""wfe in-memory persistence provider."""

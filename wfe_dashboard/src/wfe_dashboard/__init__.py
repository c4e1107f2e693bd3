"""wfe-dashboard: a web dashboard for wfe stores."""

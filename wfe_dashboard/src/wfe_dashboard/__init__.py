"""wfe-dashboard: a web dashboard for wfe stores.

Instances with filters, counts and keyset paging; an instance's step timeline,
errors, data and events; schedules; live updates over server-sent events; and the
actions suspend / resume / terminate / publish an event, each confirmed first. Run it
with ``wfe dashboard`` or from Python::

    from wfe_core.client import WorkflowClient
    from wfe_dashboard import serve

    serve(WorkflowClient.from_url("sqlite:///wfe.db"))  # http://127.0.0.1:8080

It binds 127.0.0.1 by default and refuses any other address without a token
(see :mod:`wfe_dashboard.security`).
"""

from wfe_dashboard.app import Dashboard, create_app, serve
from wfe_dashboard.security import BindRefused, check_bind

__all__ = ["BindRefused", "Dashboard", "check_bind", "create_app", "serve"]

"""The worker side: :class:`WorkflowHost` and its parts (dispatch, passes, lease
keeping, event delivery, polling), one module each."""

from wfe_core.host.host import WorkflowHost
from wfe_core.options import HostOptions, MiddlewarePhase, PendingActivity

__all__ = ["HostOptions", "MiddlewarePhase", "PendingActivity", "WorkflowHost"]

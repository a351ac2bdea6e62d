"""The partner dashboard: Settings > API Keys and Settings > Audit Logs as a mountable ASGI app,
for partners (their projects' keys) and operators (every project).

Example::

    # the host app signs users in
    app.mount("/partners", create_dashboard(manager, audit=audit_log, identify=who_is_signed_in))
    # or a sign-in form: accounts kept in the key store, plus an optional operator shortcut
    app.mount("/dashboard", create_dashboard(manager, admin_password=os.environ["ADMIN_PW"],
                                             audit=audit_log))

If the app also runs :class:`~nowramp_auth.starlette.ApiKeyMiddleware`, list the mount as a
public path (``public_paths=["/dashboard*"]``): the dashboard has its own sign-in.
"""

from .._accounts import DashboardUser
from ._app import create_dashboard

__all__ = ["DashboardUser", "create_dashboard"]

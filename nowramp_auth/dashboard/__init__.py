"""The partner dashboard: Settings > API Keys and Settings > Audit Logs as a mountable ASGI app.

Example::

    app.mount("/dashboard", create_dashboard(manager, admin_password=os.environ["ADMIN_PW"],
                                             audit=audit_log))

If the app also runs :class:`~nowramp_auth.starlette.ApiKeyMiddleware`, list the mount as a
public path (``public_paths=["/dashboard*"]``): the dashboard has its own sign-in.
"""

from .._accounts import DashboardUser
from ._app import create_dashboard

__all__ = ["DashboardUser", "create_dashboard"]

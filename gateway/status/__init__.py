"""The operators' status page at /admin: `StatusPage` and the routes below, mounted by `Gateway.routes()`.

    GET  /admin               the page (or the sign-in form without a valid admin cookie)
    POST /admin/login         form field `token`: an admin JWT, kept in the HttpOnly `edgegw_admin` cookie
    POST /admin/logout        forget the cookie
    GET  /admin/panel         the page's refreshing part, as HTML (what the page's script polls)
    GET  /admin/status.json   the same data as JSON, for scripts
    GET  /admin/static/NAME   status.css, status.js
"""

from gateway.status.routes import StatusPage, sign_in_routes, status_routes

__all__ = ["StatusPage", "sign_in_routes", "status_routes"]

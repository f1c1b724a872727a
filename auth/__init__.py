"""Identity for Zasper Hub: framework-free providers (token, password, hub OAuth).

A provider answers one question — who sent this request? — from a
`RequestInfo` (headers, cookies, query) without knowing about tornado.  The
tornado adapter in `zasperhub.auth.web` turns handlers' requests into
`RequestInfo` and applies the answer (cookies, redirects, 401/403).
"""

from zasperhub.auth.base import AuthResult, IdentityProvider, RequestInfo, User

__all__ = ["AuthResult", "IdentityProvider", "RequestInfo", "User"]

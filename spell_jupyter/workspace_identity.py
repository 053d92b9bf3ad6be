"""Who may use a workspace's Jupyter (it runs inside the workspace's run): only requests the
host's proxy sends, which carry the token the host derived for the run ($SPELL_SERVICE_TOKEN)
and name the host's user. JupyterLab copies Jupyter's `token` setting into every page it
serves, so that setting holds a placeholder nothing accepts: the token never reaches a
browser, and the login form takes nothing.

Used as `--ServerApp.identity_provider_class=spell_jupyter.workspace_identity.
WorkspaceIdentityProvider`; imports jupyter_server, which the workspace's environment has.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets

from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import default

TOKEN_ENV = "SPELL_SERVICE_TOKEN"  # backends.base.SERVICE_TOKEN_ENV, read here without it
USER_HEADER = "X-Spell-User"  # the host's user, as the proxy names them (JSON)


class WorkspaceIdentityProvider(IdentityProvider):
    """Token authentication with a secret the pages never see."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # kernels and terminals of the workspace do not inherit it
        self._secret = os.environ.pop(TOKEN_ENV, "")

    @default("token")
    def _token_default(self) -> str:
        self.token_generated = False
        return "placeholder-" + secrets.token_hex(16)  # accepted nowhere (see below)

    async def get_user_token(self, handler) -> User | None:
        given = self.get_token(handler) or ""
        if not self._secret or not hmac.compare_digest(given.encode(), self._secret.encode()):
            return None
        try:
            named = json.loads(handler.request.headers.get(USER_HEADER, "{}"))
        except ValueError:
            named = {}
        username = str(named.get("username") or "spell")
        return User(
            username=username,
            name=str(named.get("name") or username),
            display_name=str(named.get("display_name") or username),
        )

    def get_user_cookie(self, handler) -> None:
        return None  # every request comes through the proxy, with the token

    def set_login_cookie(self, handler, user: User) -> None:
        pass

    def process_login_form(self, handler) -> None:
        return None

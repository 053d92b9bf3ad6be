"""Who creates a run: the Jupyter user of the request, as jupyter_server's identity provider
names them.

Jupyter's own providers (a shared token or password) do not name users: each token-bearing
request is a fresh "Anonymous" user. Behind them the server has one user, its owner
(`SpellJupyter.owner`, default: the login name it runs as). Any other provider (JupyterHub's,
an organisation's) names real users, and their names are the runs' owners.
"""

from __future__ import annotations

from jupyter_server.auth.identity import (
    IdentityProvider,
    LegacyIdentityProvider,
    PasswordIdentityProvider,
)

SHARED_TOKEN_PROVIDERS = (IdentityProvider, PasswordIdentityProvider, LegacyIdentityProvider)
MAX_OWNER = 128  # the store's column


def names_users(provider: object) -> bool:
    """Whether `provider` tells users apart (not one of Jupyter's shared-token providers)."""
    return type(provider) not in SHARED_TOKEN_PROVIDERS


def request_owner(user: object, provider: object, server_owner: str) -> str:
    """The owner of what a request creates."""
    name = getattr(user, "username", "") if names_users(provider) else ""
    return (name or server_owner)[:MAX_OWNER]

"""The light client's own packages (`spell`, `spell_jupyter`: the client is standard library
only), for putting on the PYTHONPATH of code that runs outside this environment: runs, and a
workflow's --local master."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# The client is standard library only; cloudpickle (pure Python) comes along so that `%%spell`
# cells unpickle their inputs with the very version that pickled them.
CLIENT_PACKAGES = ("spell", "spell_jupyter", "cloudpickle")


def client_packages() -> dict[str, Path]:
    """The folders of the packages a run imports the client from (`spell`, `spell_jupyter`)
    and cloudpickle."""
    found = {}
    for name in CLIENT_PACKAGES:
        spec = importlib.util.find_spec(name)  # where it is, without importing it
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"the package {name} is not installed here")
        found[name] = Path(spec.origin).parent
    return found


def link_client_packages(folder: Path) -> Path:
    """A folder holding links to the client's packages alone (for runs on this host, whose
    PYTHONPATH must not bring the server's whole environment along)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in client_packages().items():
        link = folder / name
        if link.is_symlink() and os.readlink(link) == str(source):
            continue
        temporary = folder / f".{name}.new"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(source, target_is_directory=True)
        os.replace(temporary, link)
    return folder

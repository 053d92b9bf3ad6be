"""SpellJupyter: the jupyter_server extension that hosts the REST API and, when it holds the
leader lock of its data directory, the run engine."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Type, Unicode, default

from .._version import __version__
from ..backends.base import Backend
from ..backends.local import LocalBackend
from ..engine import RunEngine, RunService
from ..engine.machine_types import DEFAULT_MACHINE_TYPES, HostCapacity, MachineTypes
from ..fs.spellfs import SpellFS
from ..paths import spell_home
from ..store import RunStore, connect_database
from ..store.database import default_db_url
from .handlers import route_table
from .serverinfo import ServerInfoFile


class SpellJupyter(ExtensionApp):
    """Spell's runs, logs and SpellFS over REST under /spell/api/v1/."""

    name = "spell_jupyter"
    app_name = "Spell"
    description = "A self-hosted Spell: runs, logs and SpellFS inside Jupyter"
    version = __version__
    extension_url = "/spell/api/v1/"
    load_other_extensions = False  # `spell server` is this extension alone
    open_browser = False

    spell_home = Unicode(help="Data directory (env SPELL_HOME; default ~/.spell)").tag(config=True)

    @default("spell_home")
    def _default_spell_home(self) -> str:
        return str(spell_home())

    db_url = Unicode(
        help="SQLAlchemy URL of the store (env SPELL_DB_URL; default SQLite in spell_home)"
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get("SPELL_DB_URL") or default_db_url(Path(self.spell_home))

    fs_root = Unicode(help="Folder that holds SpellFS (default: spell_home/fs)").tag(config=True)

    @default("fs_root")
    def _default_fs_root(self) -> str:
        return str(Path(self.spell_home) / "fs")

    backend_class = Type(
        default_value=LocalBackend, klass=Backend, help="The backend that runs commands"
    ).tag(config=True)

    machine_types = Dict(
        default_value=DEFAULT_MACHINE_TYPES,
        help="Machine types users pick with -t: name -> {cpus, memory ('16GiB'), gpu, gpus}",
    ).tag(config=True)

    host_capacity = Dict(
        default_value={},
        help="This host's capacity, {cpus, memory, gpus: [{index, model}]}; what is left out "
        "is read from the machine (CPU count, /proc/meminfo, nvidia-smi)",
    ).tag(config=True)

    write_server_info = Bool(
        False, help="Write spell_home/server.json for clients (set by `spell server`)"
    ).tag(config=True)

    def initialize_settings(self) -> None:
        home = Path(self.spell_home)
        home.mkdir(parents=True, exist_ok=True)
        self.server_info = None
        if self.write_server_info:
            self.server_info = ServerInfoFile(home)
            self.server_info.claim()  # exits if another `spell server` serves this home
        store = RunStore(connect_database(self.db_url))
        fs = SpellFS(self.fs_root)
        backend = self.backend_class(parent=self, state_root=str(home / "local"))
        host = HostCapacity.from_config(self.host_capacity)
        machine_types = MachineTypes(self.machine_types, host)
        self.engine = RunEngine(
            parent=self,
            store=store,
            backend=backend,
            fs=fs,
            home=home,
            machine_types=machine_types,
        )
        self.service = RunService(
            store=store, fs=fs, machine_types=machine_types, engine=self.engine
        )
        self.settings.update(spell_service=self.service, spell_engine=self.engine)
        self.engine.start()
        if self.server_info is not None:
            self.server_info.write(
                url=self.serverapp.connection_url,
                token=self.serverapp.identity_provider.token,
                version=__version__,
            )

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())

    async def stop_extension(self) -> None:
        self.engine.stop()
        if self.server_info is not None:
            self.server_info.remove()


main = launch_new_instance = SpellJupyter.launch_instance

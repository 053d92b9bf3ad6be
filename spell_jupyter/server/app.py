"""SpellJupyter: the jupyter_server extension that hosts the REST API and, when it holds the
leader lock of its data directory, the run engine."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Enum, Int, List, Type, Unicode, default
from traitlets.config import Config

from .._version import __version__
from ..backends import backend_named
from ..backends.base import Backend
from ..backends.docker import DockerBackend
from ..backends.local import LocalBackend
from ..engine import RunEngine
from ..engine.environments import DEFAULT_FRAMEWORKS, Frameworks
from ..engine.leader import FileLeaderLock, leader_lock_path
from ..engine.machine_types import DEFAULT_MACHINE_TYPES, HostCapacity, MachineTypes
from ..fs.spellfs import SpellFileSystem
from ..home_config import config_path, engine_info_path, read_json
from ..kernels.registry import set_kernel_runs
from ..kernels.specs import install_defaults as install_default_kernel_specs
from ..paths import run_api_dir, spell_home
from ..processes import alive
from ..services import DEFAULT_MOUNT_URLS, RunManager, SpellFSManager
from ..services.change_feed import ChangeFeed
from ..services.kernels import KernelRuns
from ..services.lab_runs import LabRuns
from ..services.metrics import MetricsManager
from ..services.run_access import RunAccess
from ..services.tensorboards import TensorBoards
from ..services.workspaces import WorkspaceManager
from ..store import RunStore, connect_database
from ..store.database import default_db_url
from ..store.metrics import MetricStore
from .handlers import route_table
from .run_socket import RunSocket
from .serverinfo import ServerInfoFile
from .service_proxy import proxy_routes
from .standalone import SpellServerApp


class SpellJupyter(ExtensionApp):
    """Spell's runs, logs and SpellFS over REST under /spell/api/v1/."""

    name = "spell_jupyter"
    app_name = "Spell"
    description = "A self-hosted Spell: runs, logs and SpellFS inside Jupyter"
    version = __version__
    extension_url = "/spell/api/v1/"
    load_other_extensions = False  # `spell server` is this extension alone
    serverapp_class = SpellServerApp  # ... and none of Jupyter's contents or kernels
    # in --help-all and --generate-config with their own sections
    classes = [*ExtensionApp.classes, RunEngine, DockerBackend, LocalBackend]

    open_browser = Bool(
        False, help="Open a browser when `spell server` starts (it has no page to show)"
    ).tag(config=True)

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

    owner = Unicode(
        help="Who runs created through this server's shared token or password belong to "
        "(env SPELL_USER; default: the login name the server runs as). Where the identity "
        "provider names users (JupyterHub), their names are the owners."
    ).tag(config=True)

    @default("owner")
    def _default_owner(self) -> str:
        return os.environ.get("SPELL_USER") or login_name()

    fs_root = Unicode(
        help="Where SpellFS is kept: a local folder, or a URL such as s3://bucket/prefix "
        "(through s3fs) shared by a team (env SPELL_FS_ROOT; default: spell_home/fs)"
    ).tag(config=True)

    @default("fs_root")
    def _default_fs_root(self) -> str:
        return os.environ.get("SPELL_FS_ROOT") or str(Path(self.spell_home) / "fs")

    fs_options = Dict(
        help="Storage options of the SpellFS root and of bucket mounts, e.g. "
        "{'endpoint_url': ..., 'key': ..., 'secret': ...} for S3 (fsspec's FSSPEC_S3_* "
        "variables work too)"
    ).tag(config=True)

    public_source = Unicode(
        "",
        help="Folder or URL shown read-only as public/ (default: the root's public/ folder)",
    ).tag(config=True)

    output_umask = Int(
        0o077,
        help="Permission bits a run's saved outputs (and their folders) never have, on a local "
        "SpellFS root: 0o077 (default) keeps them to this server's user, as the data directory "
        "is; 0o022 lets every local user read them",
    ).tag(config=True)

    allow_uncommitted_changes = Bool(
        True,
        help="Accept runs whose code has uncommitted changes (sent as a patch); False makes "
        "them an error, so every run is exactly a commit",
    ).tag(config=True)

    allowed_mount_urls = List(
        Unicode(),
        default_value=list(DEFAULT_MOUNT_URLS),
        help="URL prefixes runs may mount besides SpellFS paths: 's3://' (any bucket, with "
        "fs_options' credentials), 's3://team-data/' (that bucket only), or a host folder an "
        "administrator shares, 'file:///data/shared/'. Host files are refused by default: any "
        "token holder could otherwise read what this server's user can",
    ).tag(config=True)

    local_copies = Bool(
        True,
        help="Copy files on disk, not over HTTP, for clients on this host running as this "
        "server's user (`spell upload`, `spell cp`); env SPELL_LOCAL_COPIES=0 turns it off. "
        "Turn it off behind a reverse proxy on this host that runs as this server's user: its "
        "clients would look local",
    ).tag(config=True)

    @default("local_copies")
    def _default_local_copies(self) -> bool:
        return os.environ.get("SPELL_LOCAL_COPIES", "1").strip().lower() not in ("0", "false", "no")

    backend = Unicode(
        help="What runs commands: 'auto' (Docker if it answers, else local processes), or "
        "the name of a backend registered under the spell_jupyter.backends entry points "
        "('docker', 'local', ...), or a Backend class as 'module.Class' (env SPELL_BACKEND; "
        "default auto). SpellJupyter.backend_class wins when set"
    ).tag(config=True)

    backend_class = Type(
        default_value=Backend,
        klass=Backend,
        help="The Backend class that runs commands, for deployments that bring their own; "
        "left at the abstract Backend, SpellJupyter.backend picks one by name",
    ).tag(config=True)

    @default("backend")
    def _default_backend(self) -> str:
        return os.environ.get("SPELL_BACKEND") or "auto"

    frameworks = Dict(
        default_value=DEFAULT_FRAMEWORKS,
        help="--framework NAME -> {image, packages}: the base image, and the packages it "
        "provides (left out of --deps-from-env). Entries here replace the shipped ones of the "
        "same name; env SPELL_FRAMEWORKS (JSON) is applied last",
    ).tag(config=True)

    ca_certificates = List(
        Unicode(),
        help="PEM files installed into every built image, so pip and apt work behind a "
        "TLS-intercepting proxy (default: the host's /usr/local/share/ca-certificates/*.crt)",
    ).tag(config=True)

    @default("ca_certificates")
    def _default_ca_certificates(self) -> list[str]:
        return sorted(str(p) for p in Path("/usr/local/share/ca-certificates").glob("**/*.crt"))

    pip_installer = Enum(
        ["auto", "uv", "pip"],
        default_value="auto",
        help="How builds install pip packages: uv when the base image has it (auto), or "
        "always uv / pip",
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

    kernel_specs = Bool(
        True,
        help="Write a kernel spec 'Python 3 (Spell · TYPE)' (spell-TYPE) for each machine type "
        "this host can hold into the user's Jupyter data folder as the server starts (one of "
        "that name already there is kept), so notebooks can pick a kernel that is a Spell run",
    ).tag(config=True)

    autoload_magics = Bool(
        False,
        help="Load the %spell_run and %%spell magics into every IPython kernel this Jupyter "
        "server starts (as `%load_ext spell_jupyter` does), through the kernels' "
        "PYTHONSTARTUP; a PYTHONSTARTUP of your own still runs after it",
    ).tag(config=True)

    @property
    def is_spell_server(self) -> bool:
        """Whether this is `spell server` (this extension started its own Jupyter server), not
        an extension inside JupyterLab or another server: only that writes server.json and
        only that does `spell server stop` stop."""
        return getattr(self.serverapp, "starter_app", None) is self

    def initialize_settings(self) -> None:
        home = spell_home(self.spell_home)
        make_private_home(home, sqlite_here=self.db_url == default_db_url(home))
        self._load_home_config(home)
        self.server_info = None
        if self.is_spell_server:
            self.server_info = ServerInfoFile(home)
            self.server_info.claim()  # exits if another `spell server` serves this home
        store = RunStore(connect_database(self.db_url))
        metric_store = MetricStore(store)
        fs = SpellFileSystem(
            self.fs_root,
            public=self.public_source or None,
            root_options=self.fs_options,
            output_umask=self.output_umask,
            skip_instance_cache=True,
        )
        resources = SpellFSManager(fs, home / "staging")
        backend = self._backend(home, fs)
        self.log.info("Spell: runs use the %s backend", backend.name)
        # a cluster's backend places runs on its nodes: this host's capacity is not theirs
        host = None if backend.places_runs else HostCapacity.from_config(self.host_capacity)
        backend.api_url = self.serverapp.connection_url
        machine_types = MachineTypes(self.machine_types, host)
        frameworks = Frameworks(self._framework_table())
        self.engine = RunEngine(
            parent=self,
            run_api_dir=run_api_dir(home),
            metrics=metric_store,
            store=store,
            backend=backend,
            home=home,
            machine_types=machine_types,
            frameworks=frameworks,
            ca_files=[Path(p) for p in self.ca_certificates],
            pip_installer=self.pip_installer,
        )
        settings = self._run_settings(self.engine)
        try:
            agree_with_leader(home, settings)
        except SettingsConflict as exc:
            self.log.error("%s", exc)  # Jupyter goes on without this extension
            raise
        self.engine.leader_record = {
            "url": self.serverapp.connection_url,
            "spell_server": self.is_spell_server,
            "settings": settings,
        }
        self.service = RunManager(
            store=store,
            resources=resources,
            machine_types=machine_types,
            engine=self.engine,
            frameworks=frameworks,
            allow_uncommitted_changes=self.allow_uncommitted_changes,
            allowed_mount_urls=tuple(self.allowed_mount_urls),
        )
        self.tensorboards = TensorBoards(store, self.engine, fs, home, self.serverapp.base_url)
        self.settings.update(
            spell_service=self.service,
            spell_owner=self.owner,
            spell_resources=resources,
            spell_engine=self.engine,
            spell_local_copies=self.local_copies,
            spell_is_spell_server=self.is_spell_server,
            spell_run_access=RunAccess(store),
            spell_metrics=MetricsManager(store, metric_store, self.engine.wake),
            spell_changes=ChangeFeed(store, metric_store),
            spell_workspaces=WorkspaceManager(
                self.service, store, self.engine.service_tokens, self.serverapp.base_url
            ),
            spell_tensorboards=self.tensorboards,
            spell_lab_runs=LabRuns(
                self.serverapp.root_dir,
                resources,
                allow_hidden=self.serverapp.contents_manager.allow_hidden,
            ),
        )
        self.run_socket = RunSocket(
            self.serverapp.web_app.settings, self.engine.run_api_dir, IOLoop.current()
        )
        self.engine.leading_hooks.append(self.run_socket.open)
        set_kernel_runs(
            KernelRuns(
                self.service,
                store,
                self.engine,
                self.engine.service_tokens,
                self.serverapp.root_dir,
                owner=self.owner,
            )
        )
        if self.kernel_specs and not self.is_spell_server:  # a `spell server` runs no kernels
            self._install_kernel_specs(machine_types)
        self._share_with_kernels(home)
        self.engine.start()
        if self.server_info is not None:
            self.server_info.write(
                url=self.serverapp.connection_url,
                token=self.serverapp.identity_provider.token,
                version=__version__,
            )

    def _install_kernel_specs(self, machine_types: MachineTypes) -> None:
        holdable = [t.name for t in machine_types.types.values() if not machine_types.never_fits(t)]
        try:
            install_default_kernel_specs(holdable)
        except OSError as exc:  # a read-only data folder: the server goes on without them
            self.log.warning("Spell: could not write the Spell kernel specs: %s", exc)

    def _share_with_kernels(self, home: Path) -> None:
        """Kernels and terminals this server starts inherit its environment: they find this
        server's data directory (one `spell ps` everywhere) and, when asked, the magics."""
        os.environ["SPELL_HOME"] = str(home)
        if not self.autoload_magics:
            return
        startup = str(Path(__file__).parents[1] / "notebook" / "kernel_startup.py")
        previous = os.environ.get("PYTHONSTARTUP", "")
        if previous != startup:
            os.environ["SPELL_PREVIOUS_PYTHONSTARTUP"] = previous
            os.environ["PYTHONSTARTUP"] = startup

    def _load_home_config(self, home: Path) -> None:
        """Apply the data directory's config.json under this server's own config files and
        command line (they win; the leader check below catches any disagreement)."""
        data = read_json(config_path(home))
        if data:
            merged = Config(data)
            merged.merge(self.config)
            self.update_config(merged)
            self.log.info("Spell: settings of %s read from %s", home, config_path(home))

    def _run_settings(self, engine: RunEngine) -> dict:
        """What decides how runs execute: every server of a data directory must agree on it.
        Storage options are compared by digest (they may hold secrets)."""
        options = json.dumps(self.fs_options, sort_keys=True, default=str).encode()
        settings = {
            "SpellJupyter.backend": (
                f"{self.backend_class.__module__}.{self.backend_class.__qualname__}"
                if self.backend_class is not Backend
                else self.backend
            ),
            "SpellJupyter.db_url": self.db_url,
            "SpellJupyter.fs_root": self.fs_root,
            "SpellJupyter.fs_options": hashlib.sha256(options).hexdigest()[:16],
            "SpellJupyter.public_source": self.public_source,
            "SpellJupyter.output_umask": self.output_umask,
            "SpellJupyter.allow_uncommitted_changes": self.allow_uncommitted_changes,
            "SpellJupyter.allowed_mount_urls": list(self.allowed_mount_urls),
            "SpellJupyter.frameworks": self._framework_table(),
            "SpellJupyter.ca_certificates": list(self.ca_certificates),
            "SpellJupyter.pip_installer": self.pip_installer,
            "SpellJupyter.machine_types": self.machine_types,
            "SpellJupyter.host_capacity": self.host_capacity,
            "RunEngine.concurrency_limit": engine.concurrency_limit,
            "RunEngine.stop_grace_period": engine.stop_grace_period,
            "DockerBackend.docker_host": getattr(engine.backend, "docker_host", ""),
        }
        return json.loads(json.dumps(settings, default=str))  # as engine.json will hold it

    def _backend(self, home: Path, fs: SpellFileSystem) -> Backend:
        options = {"parent": self, "fs": fs, "home": home, "bucket_options": self.fs_options}
        if self.backend_class is not Backend:
            return self.backend_class(**options)
        choice = self.backend.strip()
        if choice == "auto":
            docker = DockerBackend(**options)
            if docker.answers():
                return docker
            return LocalBackend(**options)
        return backend_named(choice)(**options)

    def _framework_table(self) -> dict:
        table = {**DEFAULT_FRAMEWORKS, **self.frameworks}
        if os.environ.get("SPELL_FRAMEWORKS"):
            table.update(json.loads(os.environ["SPELL_FRAMEWORKS"]))
        return table

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())
        self.handlers.extend(proxy_routes())

    async def stop_extension(self) -> None:
        self.tensorboards.close()
        self.run_socket.close()  # before leadership (and the socket's path) passes on
        self.engine.stop()
        if self.server_info is not None:
            self.server_info.remove()


def make_private_home(home: Path, sqlite_here: bool) -> None:
    """The data directory holds the database (run specs with their environment variables), the
    log and server.json: it is readable by this user alone, as are the SQLite files."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    for name in ("spell.db", "spell.db-wal", "spell.db-shm", "server.log"):
        path = home / name
        if path.exists():
            os.chmod(path, 0o600)
    database = home / "spell.db"
    if sqlite_here and not database.exists():  # SQLite gives -wal and -shm the same mode
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))


def login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (some containers)
        return f"uid-{os.getuid()}"


def agree_with_leader(home: Path, settings: dict) -> None:
    """Refuse to serve `home` with run settings other than those of the server that leads its
    engine (they would be ignored in silence while it leads)."""
    try:
        leader = read_json(engine_info_path(home))
    except ValueError:
        return  # a torn or foreign file: the next leader rewrites it
    pid = leader.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not alive(pid):
        return
    probe = FileLeaderLock(leader_lock_path(home))
    if probe.try_acquire():  # nobody leads now (that pid is another process by now)
        probe.release()
        return
    theirs = leader.get("settings") or {}
    differ = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
    if differ:
        shown = "; ".join(
            f"{k}: {_short(settings.get(k))} here, {_short(theirs.get(k))} there" for k in differ
        )
        stop = "`spell server stop`" if leader.get("spell_server") else "stop that Jupyter server"
        raise SettingsConflict(
            f"Spell: another server leads the runs of {home} (pid {pid} at {leader.get('url')}) "
            f"with other run settings ({shown}). Start this one with the same settings, put "
            f"them in {config_path(home)} for every server of this data directory, or {stop} "
            "first."
        )


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class SettingsConflict(RuntimeError):
    """This server's run settings differ from those of the engine's leader."""


main = launch_new_instance = SpellJupyter.launch_instance

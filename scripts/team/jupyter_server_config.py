# Each user's JupyterLab (or a JupyterHub's single-user servers) in a team: one PostgreSQL
# store, one S3 bucket for SpellFS, one Ray cluster. Copy into the user's Jupyter config folder
# (`jupyter --config-dir`) and fill in the values; secrets may come from the environment.
import os

c = get_config()  # noqa: F821  (Jupyter's config loader defines it)

c.SpellJupyter.db_url = os.environ["SPELL_DB_URL"]  # postgresql://spell:...@db-host/spell
c.SpellJupyter.fs_root = "s3://team-bucket/spellfs"
c.SpellJupyter.fs_options = {
    "endpoint_url": os.environ.get("FSSPEC_S3_ENDPOINT_URL"),  # None: AWS itself
    "key": os.environ.get("AWS_ACCESS_KEY_ID"),
    "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
}
c.SpellJupyter.backend = "ray"
c.RayBackend.address = "head-host:6379"  # or RAY_ADDRESS
c.SpellJupyter.machine_types = {
    "CPU": {"cpus": 1, "memory": "2GiB"},
    "T4": {"cpus": 4, "memory": "16GiB", "gpu": "T4", "gpus": 1},
}
# The image node.sh builds on each node with Docker: runs there are containers of it (plus
# what --pip/--apt/... add, built on the node that runs them).
c.SpellJupyter.frameworks = {
    "default": {"image": "spell/base:bookworm-py311", "packages": []},
}
# Runs on the nodes reach the leading server's API here: listen where the nodes see it.
c.ServerApp.ip = "0.0.0.0"

"""`%%spell` on the kernel's side: the cell's code and its `--in` variables go to the run, the
`--out` variables come back when it completes.

What the run needs travels as one folder, stored once (by its digest) under
`uploads/notebook-cells/` and mounted at `.spell-cell` in the run's working folder; the run's
`cell_runner` leaves the `--out` variables in `spell-cell-outputs.pkl`, an output of the run."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

from ..notebook_runs import SHIPPED_PREFIX
from .cell_runner import OUTPUTS_FILE, unpicklable

CELL_MOUNT = ".spell-cell"
RUNNER = "python -m spell_jupyter.notebook.cell_runner"


class CellError(Exception):
    """A `%%spell` cell cannot run, or its variables cannot come back; the message says why."""


def variable_names(values: tuple[str, ...], flag: str) -> list[str]:
    """`--in a,b --in c` -> [a, b, c], each a Python name."""
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise CellError(f"{flag} takes variable names separated by commas, not {', '.join(bad)}")
    return list(dict.fromkeys(names))


def pack_cell(
    body: str, inputs: list[str], outputs: list[str], namespace: dict
) -> dict[str, bytes]:
    """The files of the cell's folder, by name."""
    import cloudpickle

    if not body.strip():
        raise CellError("%%spell runs the code in the cell below its flags: the cell is empty")
    missing = [name for name in inputs if name not in namespace]
    if missing:
        raise CellError(f"--in {', '.join(missing)}: no such variable in the notebook")
    values = {name: namespace[name] for name in inputs}
    try:
        pickled = cloudpickle.dumps(values, protocol=5) if inputs else b""
    except Exception:
        raise CellError(f"--in: {unpicklable(values)}") from None
    spec = {
        "inputs": inputs,
        "outputs": outputs,
        "python": "{}.{}".format(*sys.version_info[:2]),
        "cloudpickle": cloudpickle.__version__,
    }
    return {
        "cell.py": body.encode(),
        "cell.json": json.dumps(spec, sort_keys=True).encode(),
        "inputs.pkl": pickled,
    }


def ship_cell(client, files: dict[str, bytes]) -> str:
    """Store the cell's files in SpellFS (once per content); their SpellFS path."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    name = f"{SHIPPED_PREFIX}/{digest.hexdigest()[:24]}"
    with tempfile.TemporaryDirectory(prefix="spell-cell-") as folder:
        for filename, data in files.items():
            (Path(folder) / filename).write_bytes(data)
        return client.resources.upload_once(folder, name)


def outputs_path(run) -> str:
    """Where the run's `--out` variables are kept in SpellFS."""
    spec = run.raw["spec"]
    cwd = spec.get("cwd") or ""
    repository = (spec.get("code") or {}).get("repository")
    if repository and (cwd == repository or cwd.startswith(repository + "/")):
        cwd = cwd[len(repository) :].strip("/")
    return "/".join(p for p in (f"runs/{run.id}", cwd, OUTPUTS_FILE) if p)


def load_outputs(run, client=None) -> dict:
    """The `--out` variables of a completed `%%spell` run, by name."""
    import cloudpickle

    client = client or run._client
    path = outputs_path(run)
    with tempfile.TemporaryDirectory(prefix="spell-cell-") as folder:
        copied = client.resources.cp(path, folder, quiet=True)
        if not copied:
            raise CellError(f"run {run.id} left no {path}")
        data = Path(copied[0]).read_bytes()
    try:
        return cloudpickle.loads(data)
    except Exception as exc:
        raise CellError(
            f"the --out variables of run {run.id} cannot be read in this kernel: "
            f"{type(exc).__name__}: {exc} (is a package the run used missing here, or at "
            "another version?)"
        ) from None

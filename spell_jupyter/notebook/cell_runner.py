"""Run a `%%spell` cell inside a run: `python -m spell_jupyter.notebook.cell_runner FOLDER`.

FOLDER (mounted into the run) holds `cell.py` (the cell's code), `cell.json` (the names to send
back, the kernel's Python and cloudpickle versions) and `inputs.pkl` (the `--in` variables,
cloudpickled). The cell runs as `__main__` with the inputs as globals; the `--out` variables are
cloudpickled into OUTPUTS_FILE in the working folder, an output of the run like any file it
writes. Standard library and cloudpickle only (mounted with the client)."""

from __future__ import annotations

import json
import linecache
import sys
from pathlib import Path

OUTPUTS_FILE = "spell-cell-outputs.pkl"


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    return 2


def unpicklable(values: dict) -> str:
    """Which of `values` cloudpickle refuses, and why."""
    import cloudpickle

    problems = []
    for name, value in values.items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            problems.append(f"{name} ({type(value).__name__}) cannot be pickled: {exc}")
    return "; ".join(problems) or "the variables cannot be pickled together"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        return fail("usage: python -m spell_jupyter.notebook.cell_runner FOLDER")
    folder = Path(argv[0]).resolve()
    outputs_file = Path.cwd() / OUTPUTS_FILE  # where the kernel looks, even if the cell cds
    spec = json.loads((folder / "cell.json").read_text())
    here = "{}.{}".format(*sys.version_info[:2])
    if spec["inputs"] or spec["outputs"]:
        if spec["python"] != here:
            return fail(
                f"the notebook's kernel runs Python {spec['python']} and this run's image "
                f"Python {here}: variables pickled by one cannot be read by the other. Use an "
                f"image with Python {spec['python']} (--framework, --docker-image) or a kernel "
                f"with Python {here}, or leave out --in/--out"
            )
        import cloudpickle

        if cloudpickle.__version__ != spec["cloudpickle"]:
            return fail(
                f"cloudpickle {cloudpickle.__version__} here, {spec['cloudpickle']} in the "
                "kernel: pickles need the same version"
            )
    namespace: dict = {"__name__": "__main__", "__file__": "<%%spell cell>"}
    if spec["inputs"]:
        with open(folder / "inputs.pkl", "rb") as f:
            namespace.update(cloudpickle.load(f))
    source = (folder / "cell.py").read_text()
    name = "<%%spell cell>"  # its lines show in tracebacks
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    exec(compile(source, name, "exec"), namespace)
    if spec["outputs"]:
        missing = [name for name in spec["outputs"] if name not in namespace]
        if missing:
            return fail(f"--out {', '.join(missing)}: the cell did not set {', '.join(missing)}")
        values = {name: namespace[name] for name in spec["outputs"]}
        try:
            with open(outputs_file, "wb") as f:
                cloudpickle.dump(values, f, protocol=5)
        except Exception:
            outputs_file.unlink(missing_ok=True)
            return fail(f"--out: {unpicklable(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

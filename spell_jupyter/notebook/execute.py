"""Execute a notebook inside a run, papermill-style: `python -m spell_jupyter.notebook.execute
NB.ipynb [-p NAME VALUE]... [-r NAME VALUE]...`.

Parameters go into a new cell (tagged `injected-parameters`) after the cell tagged `parameters`
(or at the top, with a warning, when there is none). Each cell's output is printed as it
arrives, so it streams into the run's logs. The executed notebook is saved after every cell as
`NB.executed.ipynb` (a failing cell leaves it saved up to that cell), and an HTML copy as
`NB.executed.html`; both are outputs of the run. A failing cell fails the run (exit 1) with the
cell's traceback in the logs.

Runs with the run's own Python: it needs nbclient and ipykernel (and nbconvert for the HTML
copy), which the default base image has; nothing else of spell-jupyter is imported."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def parse_value(text: str):
    """A `-p` value as papermill's command line reads it: True/False/None, int, float, or the
    string itself."""
    constants = {"True": True, "False": False, "None": None}
    if text in constants:
        return constants[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parameters_source(parameters: dict) -> str:
    lines = ["# Parameters"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def inject_parameters(nb, parameters: dict) -> bool:
    """Add the parameters cell to `nb` (nbformat v4); False when `nb` has no `parameters` cell
    (the new cell then goes first)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(parameters_source(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    tagged = [
        i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    if tagged:
        nb.cells.insert(tagged[0] + 1, cell)
        return True
    nb.cells.insert(0, cell)
    return False


def _echo_output(msg: dict) -> None:
    """Print one output message of the kernel as a terminal would show it."""
    kind, content = msg["msg_type"], msg["content"]
    if kind == "stream":
        target = sys.stdout if content.get("name") == "stdout" else sys.stderr
        target.write(content.get("text", ""))
        target.flush()
    elif kind in ("execute_result", "display_data"):
        text = content.get("data", {}).get("text/plain")
        if text:
            print(text, flush=True)
    # an "error" is printed once, from the CellExecutionError that ends the notebook


def execute(path: Path, parameters: dict) -> int:
    """Run the notebook at `path`; the process's exit code."""
    try:
        import nbformat
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as exc:
        print(
            f"Error: this environment cannot execute notebooks ({exc}): add "
            "`--pip nbclient --pip ipykernel` (and nbconvert for the HTML copy) or use the "
            "default framework",
            file=sys.stderr,
        )
        return 2
    with warnings.catch_warnings():  # notebooks saved without cell IDs get them when written
        warnings.simplefilter("ignore")
        nb = nbformat.read(path, as_version=4)
    if parameters and not inject_parameters(nb, parameters):
        print(
            f"Warning: {path.name} has no cell tagged '{PARAMETERS_TAG}': the parameters were "
            "put in a new first cell",
            file=sys.stderr,
            flush=True,
        )
    executed = path.with_name(f"{path.stem}.executed.ipynb")

    def save(**_) -> None:
        nbformat.write(nb, executed)

    class StreamingClient(NotebookClient):
        def process_message(self, msg, cell, cell_index):
            _echo_output(msg)
            return super().process_message(msg, cell, cell_index)

    kernel = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    # ipykernel's debugger otherwise warns about frozen modules in every run's log
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    code = 0
    sockets = tempfile.mkdtemp(prefix="spell-kernel-")  # not in the folder: not an output

    def execute_with(name: str) -> None:
        # the kernel's channels are Unix sockets, private to the run (no TCP port, no warning)
        manager = KernelManager(kernel_name=name, transport="ipc", ip=f"{sockets}/kernel")
        try:
            StreamingClient(
                nb,
                km=manager,
                resources={"metadata": {"path": str(path.parent.resolve())}},
                on_cell_executed=save,
                timeout=None,
            ).execute()
        finally:
            if manager.has_kernel:
                manager.shutdown_kernel()

    try:
        try:
            execute_with(kernel)
        except NoSuchKernel:
            print(f"No kernel {kernel!r} here: executing with python3", file=sys.stderr)
            execute_with("python3")
    except CellExecutionError as exc:
        print(f"\nThe notebook failed in a cell:\n{exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        save()
        print(f"Executed notebook saved as {executed.name}", flush=True)
        _save_html(nb, path.with_name(f"{path.stem}.executed.html"))
    return code


def _save_html(nb, target: Path) -> None:
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        print("No HTML copy: nbconvert is not installed in this environment", file=sys.stderr)
        return
    body, _ = HTMLExporter().from_notebook_node(nb)
    target.write_text(body, encoding="utf-8")
    print(f"HTML copy saved as {target.name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spell run NOTEBOOK", description=__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument(
        "-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    parser.add_argument(
        "-r", "--parameters-raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    args = parser.parse_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameters}
    parameters.update(dict(args.parameters_raw))
    return execute(args.notebook, parameters)


if __name__ == "__main__":
    sys.exit(main())

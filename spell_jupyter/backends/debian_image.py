"""A Python base image built from Debian packages with no registry: mmdebstrap makes a root
filesystem from the host's own apt mirrors, `docker import` turns it into an image.

For air-gapped sites (and CI), where no `FROM python:...` can be pulled. The host's extra CA
certificates are trusted inside, so pip works behind a TLS-intercepting proxy.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_TAG = "spell/base:bookworm-py311"
DEFAULT_SUITE = "bookworm"
# python-is-python3 makes `python` what every Spell example runs; python3-pip brings `pip`;
# ipykernel, nbclient and nbconvert execute notebooks as runs (`spell run nb.ipynb`).
PACKAGES = (
    "python3",
    "python-is-python3",
    "python3-pip",
    "python3-venv",
    "git",
    "ca-certificates",
    "python3-ipykernel",
    "python3-nbclient",
    "python3-nbconvert",
)
RECIPE_LABEL = "org.spell-jupyter.base-recipe"
# The Python packages those Debian packages provide, declared in the framework entry: left out
# of --deps-from-env, and notebook runs need install nothing more.
PYTHON_PACKAGES = ("ipykernel", "jupyter-client", "nbclient", "nbconvert", "nbformat")


def recipe(suite: str) -> str:
    """Names what a base image is built from: an image or root filesystem cache made from
    another recipe (an older package list) is built again, not reused."""
    text = json.dumps({"suite": suite, "packages": PACKAGES}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_changes(suite: str) -> list[str]:
    return [
        "ENV LANG=C.UTF-8",
        "ENV PYTHONUNBUFFERED=1",
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
        f"LABEL {RECIPE_LABEL}={recipe(suite)}",
        'CMD ["/bin/bash"]',
    ]


DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
LEGACY_SOURCES = Path("/etc/apt/sources.list")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
FALLBACK_SECURITY = "http://deb.debian.org/debian-security"


class BaseImageError(Exception):
    """The base image could not be built; the message says what to do."""


def apt_mirrors() -> tuple[str, str]:
    """(main mirror, security mirror) as the host's apt uses them."""
    uris: list[str] = []
    if DEB822_SOURCES.exists():
        for line in DEB822_SOURCES.read_text().splitlines():
            if line.startswith("URIs:"):
                uris += line.split()[1:]
    elif LEGACY_SOURCES.exists():
        for line in LEGACY_SOURCES.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and len(parts) >= 3:
                uris.append(next(p for p in parts[1:] if not p.startswith("[")))
    main = next((u for u in uris if "security" not in u), FALLBACK_MIRROR)
    security = next((u for u in uris if "security" in u), FALLBACK_SECURITY)
    return main, security


def build_rootfs(
    tarball: Path, suite: str, ca_files: list[Path], echo: Callable[[str], None]
) -> None:
    """mmdebstrap a minimal Debian with Python into `tarball` (about a minute)."""
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            "mmdebstrap is not installed: `sudo apt-get install mmdebstrap` (Debian/Ubuntu)"
        )
    main, security = apt_mirrors()
    copies = "; ".join(
        f'cp {shlex.quote(str(p))} "$1/usr/local/share/ca-certificates/{p.stem}.crt"'
        for p in ca_files
    )
    hook = f'{copies + "; " if copies else ""}chroot "$1" update-ca-certificates >/dev/null'
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        "--dpkgopt=force-unsafe-io",
        '--aptopt=APT::Install-Recommends "false"',
        f"--customize-hook={hook}",
        suite,
        str(tarball),
        f"deb {main} {suite} main",
        f"deb {main} {suite}-updates main",
        f"deb {security} {suite}-security main",
    ]
    echo(f"Building a {suite} root filesystem with mmdebstrap from {main} (about a minute)")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise BaseImageError(
            "mmdebstrap failed (it needs root, or unprivileged user namespaces):\n"
            + done.stderr[-3000:]
        )


def import_rootfs(client, tarball: Path, tag: str, suite: str = DEFAULT_SUITE) -> str:
    """`docker import` the tarball as `tag`; returns the image ID."""
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "")
    result = client.api.import_image_from_file(
        str(tarball), repository=repository, tag=version or "latest", changes=image_changes(suite)
    )
    status = json.loads(result.strip().splitlines()[-1]) if isinstance(result, str) else result
    if isinstance(status, dict) and "error" in status:
        raise BaseImageError(f"docker import failed: {status['error']}")
    return client.images.get(tag).id


def build_base_image(
    client,
    tag: str = DEFAULT_TAG,
    suite: str = DEFAULT_SUITE,
    rootfs_cache: Path | None = None,
    ca_files: list[Path] | None = None,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> str:
    """Make sure `tag` exists: reuse it, re-import a cached root filesystem, or build one."""
    import docker.errors

    wanted = recipe(suite)
    if not force:
        try:
            labels = client.images.get(tag).labels or {}
            if labels.get(RECIPE_LABEL) == wanted:
                echo(f"{tag} exists already (--force builds it again)")
                return tag
            echo(f"{tag} exists but was built from another package list: building it again")
        except docker.errors.ImageNotFound:
            pass
    with tempfile.TemporaryDirectory(prefix="spell-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        if rootfs_cache is not None and _cache_recipe(rootfs_cache) == wanted and not force:
            echo(f"Importing the cached root filesystem {rootfs_cache}")
            _unpack(rootfs_cache, tarball)
        else:
            build_rootfs(tarball, suite, list(ca_files or []), echo)
            if rootfs_cache is not None:
                _pack(tarball, rootfs_cache, wanted)
                echo(f"Cached the root filesystem in {rootfs_cache}")
        import_rootfs(client, tarball, tag, suite)
    echo(f"Built {tag}")
    return tag


def set_default_framework(home: Path, tag: str) -> Path:
    """Name `tag` as the `default` framework of the data directory `home` (its config.json,
    which every server of it reads, whatever virtualenv it runs in)."""
    from ..home_config import config_path, read_json, set_setting

    frameworks = dict(read_json(config_path(home)).get("SpellJupyter", {}).get("frameworks", {}))
    frameworks["default"] = {"image": tag, "packages": list(PYTHON_PACKAGES)}
    return set_setting(home, "SpellJupyter", "frameworks", frameworks)


def _recipe_file(cache: Path) -> Path:
    return cache.with_name(cache.name + ".recipe")


def _cache_recipe(cache: Path) -> str | None:
    """The recipe a cached root filesystem was built from (None: no usable cache)."""
    try:
        return _recipe_file(cache).read_text().strip() if cache.exists() else None
    except OSError:
        return None


def _pack(tarball: Path, cache: Path, recipe_id: str) -> None:
    """Keep the root filesystem (zstd-compressed where zstd exists) for the next build."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    _recipe_file(cache).unlink(missing_ok=True)
    partial = cache.with_name(cache.name + ".partial")
    if shutil.which("zstd") and cache.suffix == ".zst":
        subprocess.run(["zstd", "-q", "-T0", "-f", str(tarball), "-o", str(partial)], check=True)
    else:
        shutil.copyfile(tarball, partial)
    partial.replace(cache)
    _recipe_file(cache).write_text(recipe_id + "\n")


def _unpack(cache: Path, tarball: Path) -> None:
    if cache.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise BaseImageError(f"{cache} is zstd-compressed and zstd is not installed")
        subprocess.run(["zstd", "-q", "-d", "-f", str(cache), "-o", str(tarball)], check=True)
    else:
        shutil.copyfile(cache, tarball)

"""A Python base image built from Debian packages with no registry: mmdebstrap makes a root
filesystem from the host's own apt mirrors, `docker import` turns it into an image.

For air-gapped sites (and CI), where no `FROM python:...` can be pulled. The host's extra CA
certificates are trusted inside, so pip works behind a TLS-intercepting proxy.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_TAG = "spell/base:bookworm-py311"
DEFAULT_SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python3-venv", "git", "ca-certificates")
IMAGE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PYTHONUNBUFFERED=1",
    "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
    'CMD ["/bin/bash"]',
)
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


def import_rootfs(client, tarball: Path, tag: str) -> str:
    """`docker import` the tarball as `tag`; returns the image ID."""
    repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "")
    result = client.api.import_image_from_file(
        str(tarball), repository=repository, tag=version or "latest", changes=list(IMAGE_CHANGES)
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

    if not force:
        try:
            client.images.get(tag)
            echo(f"{tag} exists already (--force builds it again)")
            return tag
        except docker.errors.ImageNotFound:
            pass
    with tempfile.TemporaryDirectory(prefix="spell-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        if rootfs_cache is not None and rootfs_cache.exists() and not force:
            echo(f"Importing the cached root filesystem {rootfs_cache}")
            _unpack(rootfs_cache, tarball)
        else:
            build_rootfs(tarball, suite, list(ca_files or []), echo)
            if rootfs_cache is not None:
                _pack(tarball, rootfs_cache)
                echo(f"Cached the root filesystem in {rootfs_cache}")
        import_rootfs(client, tarball, tag)
    echo(f"Built {tag}")
    return tag


def set_default_framework(tag: str) -> Path:
    """Name `tag` as the `default` framework in this environment's Jupyter server config."""
    path = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    frameworks = config.setdefault("SpellJupyter", {}).setdefault("frameworks", {})
    frameworks["default"] = {"image": tag, "packages": []}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _pack(tarball: Path, cache: Path) -> None:
    """Keep the root filesystem (zstd-compressed where zstd exists) for the next build."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial")
    if shutil.which("zstd") and cache.suffix == ".zst":
        subprocess.run(["zstd", "-q", "-T0", "-f", str(tarball), "-o", str(partial)], check=True)
    else:
        shutil.copyfile(tarball, partial)
    partial.replace(cache)


def _unpack(cache: Path, tarball: Path) -> None:
    if cache.suffix == ".zst":
        if shutil.which("zstd") is None:
            raise BaseImageError(f"{cache} is zstd-compressed and zstd is not installed")
        subprocess.run(["zstd", "-q", "-d", "-f", str(cache), "-o", str(tarball)], check=True)
    else:
        shutil.copyfile(cache, tarball)

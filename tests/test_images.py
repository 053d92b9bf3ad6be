"""spell images build-base: the parts that need no mmdebstrap run (mirrors, config), and the
idempotent path against the real base image."""

from __future__ import annotations

import json

import pytest
from conftest import BASE_IMAGE, SpellHome, require_docker

from spell_jupyter.backends import debian_image


def test_mirrors_come_from_the_hosts_deb822_sources(tmp_path, monkeypatch):
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    monkeypatch.setattr(debian_image, "DEB822_SOURCES", sources)
    assert debian_image.apt_mirrors() == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )


def test_set_default_writes_the_data_directorys_config(tmp_path):
    home = tmp_path / "home"
    config = home / "config.json"
    home.mkdir()
    config.write_text(json.dumps({"RunEngine": {"concurrency_limit": 3}}))
    assert debian_image.set_default_framework(home, "site/base:1") == config
    assert json.loads(config.read_text()) == {
        "RunEngine": {"concurrency_limit": 3},
        "SpellJupyter": {
            "frameworks": {
                "default": {"image": "site/base:1", "packages": list(debian_image.PYTHON_PACKAGES)}
            }
        },
    }
    assert config.stat().st_mode & 0o777 == 0o600


@pytest.mark.docker
def test_build_base_reuses_an_existing_image(home: SpellHome):
    require_docker()
    result = home.spell("images", "build-base", "--tag", BASE_IMAGE)
    assert result.returncode == 0, result.stderr
    assert f"{BASE_IMAGE} exists already" in result.stdout


@pytest.mark.docker
def test_the_setup_scripts_docker_probe_says_docker_answers():
    """scripts/setup.sh builds the base image only where its probe says Docker answers: a
    probe that breaks leaves a fresh machine without its default image."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    require_docker()
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    probe = re.search(r"\.venv/bin/python -c '([^']*docker[^']*)'", setup).group(1)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

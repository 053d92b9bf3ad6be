"""spell images build-base: the parts that need no mmdebstrap run (mirrors, config), and the
idempotent path against the real base image."""

from __future__ import annotations

import json
import sys

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


def test_set_default_keeps_the_rest_of_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"ServerApp": {"port": 9999}}))
    assert debian_image.set_default_framework("site/base:1") == config
    assert json.loads(config.read_text()) == {
        "ServerApp": {"port": 9999},
        "SpellJupyter": {"frameworks": {"default": {"image": "site/base:1", "packages": []}}},
    }


@pytest.mark.docker
def test_build_base_reuses_an_existing_image(home: SpellHome):
    require_docker()
    result = home.spell("images", "build-base", "--tag", BASE_IMAGE)
    assert result.returncode == 0, result.stderr
    assert f"{BASE_IMAGE} exists already" in result.stdout

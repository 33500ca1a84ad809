"""Shared RADIUS fixtures: a world of one ISP, NAS and customers, with the server's state
files in the test's own directory."""
import pytest

from radius.testing import build_world


@pytest.fixture
def world(tmp_path, settings):
    settings.RADIUS_VAR_DIR = tmp_path
    return build_world()

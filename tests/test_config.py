"""Which properties file a program reads, and whether it then behaves as on MSF."""
from __future__ import annotations

import json

from pizzastream import config

GROUPS = [{"PropertyGroupId": "Aws", "PropertyMap": {"region": "eu-west-1"}}]


def test_a_stand_in_for_msfs_file_is_read_as_msfs(tmp_path, monkeypatch):
    stand_in = tmp_path / "application_properties.json"
    stand_in.write_text(json.dumps(GROUPS))
    monkeypatch.delenv(config.ENV_FILE, raising=False)
    monkeypatch.setenv(config.ENV_MSF_FILE, str(stand_in))
    assert config.properties_path() == stand_in
    assert not config.is_local()
    assert config.load_properties()["Aws"]["region"] == "eu-west-1"


def test_without_msfs_file_the_local_configuration_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ENV_FILE, raising=False)
    monkeypatch.setenv(config.ENV_MSF_FILE, str(tmp_path / "absent.json"))
    assert config.properties_path() == config.LOCAL_PROPERTIES
    assert config.is_local()


def test_a_named_local_file_wins_and_stays_local(tmp_path, monkeypatch):
    stand_in, named = tmp_path / "msf.json", tmp_path / "local.json"
    for path in (stand_in, named):
        path.write_text(json.dumps(GROUPS))
    monkeypatch.setenv(config.ENV_MSF_FILE, str(stand_in))
    monkeypatch.setenv(config.ENV_FILE, str(named))
    assert config.properties_path() == named
    assert config.is_local()

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


def test_the_local_stacks_fixed_ports_are_below_the_ephemeral_range():
    """A fixed listening port inside Linux's ephemeral range (32768-60999 by default) can be
    taken by any outgoing connection's local port: CI's PostgreSQL once failed to start on
    55432 with "Address already in use". Every port the local file names stays below it."""
    from urllib.parse import urlsplit

    groups = {
        group["PropertyGroupId"]: group["PropertyMap"]
        for group in json.loads(config.LOCAL_PROPERTIES.read_text())
    }
    ports = {
        f"{name}.{key}": int(value)
        for name, keys in groups.items()
        for key, value in keys.items()
        if key == "port"
    }
    ports |= {
        f"{name}.{key}": urlsplit(value).port
        for name, keys in groups.items()
        for key, value in keys.items()
        if value.startswith("http://") and urlsplit(value).port
    }
    assert {"Aurora.port", "Redis.port", "Aws.endpoint"} <= ports.keys()
    assert {key: port for key, port in ports.items() if port >= 32768} == {}


def test_the_jobs_interpreter_comes_first_on_path_once():
    environ = {"PATH": "/usr/bin:/venv/bin:/bin"}
    config.prepend_interpreter_to_path(environ, "/venv/bin/python")
    assert environ["PATH"] == "/venv/bin:/usr/bin:/bin"
    empty: dict[str, str] = {}
    config.prepend_interpreter_to_path(empty, "/opt/py/bin/python3")
    assert empty["PATH"] == "/opt/py/bin"

"""docker-compose.yml and the Dockerfile agree with Settings (SPEC §6); no Docker needed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from plumbing.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("topics", "producer", "processor")
REQUIRED_SECRETS = ("VIDEO_EVENTS_TOKEN", "FASTPIX_WEBHOOK_SECRET", "GJIRAFA_WEBHOOK_TOKEN")
_REFERENCE = re.compile(r"^\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<rest>.*))?\}$")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {str(k): str(v) for k, v in env.items()}


def _resolved(value: str, shell: dict[str, str]) -> str:
    """What compose makes of `${NAME:-default}` / `${NAME:?message}` given `shell`."""
    match = _REFERENCE.match(value)
    if match is None:
        return value
    name, op, rest = match["name"], match["op"], match["rest"]
    if shell.get(name):
        return shell[name]
    if op and op.endswith("?"):
        raise LookupError(name)
    return rest or ""


def test_services_commands_and_ports(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", *APP_SERVICES}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert _environment(services["kafka"])["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["producer"]["command"][:1] == ["serve"]
    assert "8080" in services["producer"]["command"]
    assert any(str(p).endswith(":8080:8080") for p in services["producer"]["ports"])
    assert services["processor"]["command"] == ["worker", "--data-dir", "/data"]
    assert any(str(v).endswith(":/data") for v in services["processor"]["volumes"])
    assert _environment(services["processor"])["PROCESSOR_METRICS_PORT"].endswith(":-9100}")
    assert any(str(p).endswith(":9100:9100") for p in services["processor"]["ports"])
    for name in ("producer", "processor"):
        assert services[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_app_variable_is_a_settings_field(services: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = _environment(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        unknown = set(env) - fields
        assert not unknown, f"{name}: {sorted(unknown)} are not Settings fields"


def test_producer_requires_its_secrets(services: dict[str, Any]) -> None:
    env = _environment(services["producer"])
    for secret in REQUIRED_SECRETS:
        assert secret in env and ":?" in env[secret], f"{secret} must be required"
        with pytest.raises(LookupError):
            _resolved(env[secret], {})


def test_defaults_are_valid_settings(services: dict[str, Any]) -> None:
    shell = dict.fromkeys(REQUIRED_SECRETS, "c2VjcmV0")
    for name in APP_SERVICES:
        env = {k: _resolved(v, shell) for k, v in _environment(services[name]).items()}
        settings = Settings.model_validate({k.lower(): v for k, v in env.items() if v != ""})
        assert settings.topic_partitions == 6 and settings.topic_replication == 1
        if name == "producer":
            assert settings.video_events_token is not None


def test_dockerfile_installs_the_package_on_python_311() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "COPY pyproject.toml README.md constraints.txt ./" in dockerfile
    assert "pip install -c constraints.txt ." in dockerfile  # the tested versions
    assert 'ENTRYPOINT ["livewindows"]' in dockerfile


def test_constraints_pin_every_dependency_within_its_range() -> None:
    """constraints.txt (what `make` and the image install) agrees with pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        Requirement(text)
        for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    ]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[canonicalize_name(name)] = version
    for requirement in wanted:
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned}, outside {requirement.specifier}"
        )

"""deploy/docker-compose.yml and deploy/haproxy.cfg agree with each other and with the test.

The compose file is not run here (no image registry), so what can drift is checked: HAProxy
accepts the committed config with the compose file's environment, the compose balancer mounts
that very file, its servers are the compose app services on the port they serve, and the apps
share one database, one Redis and one signing key.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_balancer_runs_the_committed_config_on_the_app_services() -> None:
    services = compose()["services"]
    lb = services["haproxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    apps = sorted(n for n in services if n.startswith("app"))
    assert apps == ["app1", "app2", "app3"]
    for i, name in enumerate(apps, 1):
        assert lb["environment"][f"TAINA_APP{i}"] == f"{name}:8000"
        assert "8000" in " ".join(services[name].get("command", [])) or "8000" in (
            (DEPLOY / "Dockerfile").read_text()
        )
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    for i in range(1, len(apps) + 1):
        assert f'server app{i} "${{TAINA_APP{i}' in cfg
    assert "option httpchk GET /readyz" in cfg  # draining processes leave the rotation
    env = [services[n]["environment"] for n in apps]
    for key in ("DATABASE_URL", "REDIS_URL", "TAINA_SECRET_KEY", "TAINA_MAX_CONCURRENT_CALLS"):
        assert len({e[key] for e in env}) == 1, key


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (install_test_packages)")
def test_haproxy_accepts_the_config_with_the_compose_environment() -> None:
    lb_env = {k: str(v) for k, v in compose()["services"]["haproxy"]["environment"].items()}
    # Compose's service names do not resolve here: check with loopback stand-ins.
    lb_env |= {k: "127.0.0.1:1" for k in lb_env if k.startswith("TAINA_APP")}
    assert HAPROXY is not None
    done = subprocess.run(
        [HAPROXY, "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        env=lb_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr

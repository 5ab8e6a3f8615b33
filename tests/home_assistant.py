"""A real Home Assistant Core for the tests: headless, offline, against a given MQTT broker.

Installed by tools/ha/install.sh into its own cached venv (~/.cache/packmonitor-ha, or $PACKMON_HA_VENV).
No onboarding: the MQTT config entry and a user with a long-lived access token are written into .storage
before the start, and the bearer token is signed here (HS256 over the refresh token's jwt_key, as
homeassistant/auth does). Started once per test module: it takes 20-40 s to come up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

VENV = Path(os.environ.get("PACKMON_HA_VENV", Path.home() / ".cache" / "packmonitor-ha"))
HASS = VENV / "bin" / "hass"


def available() -> tuple[bool, str]:
    if not HASS.exists():
        return False, f"Home Assistant is not installed in {VENV} (bash tools/ha/install.sh)"
    return True, ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(iss: str, key: str) -> str:
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"iss": iss, "iat": now, "exp": now + 3650 * 86400}).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def _store(path: Path, key: str, data: Any, version: int = 1, minor: int = 1) -> None:
    path.write_text(json.dumps({"version": version, "minor_version": minor, "key": key, "data": data}))


class HomeAssistant:
    def __init__(self, conf_dir: Path, http_port: int, broker_port: int, discovery_prefix: str = "homeassistant"):
        self.dir = conf_dir
        self.port = http_port
        self.broker_port = broker_port
        self.prefix = discovery_prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.log_path = conf_dir / "home-assistant.log"

    # -- configuration written directly, no onboarding -------------------------------------------
    def write_config(self) -> None:
        d = self.dir
        (d / ".storage").mkdir(parents=True, exist_ok=True)
        (d / "configuration.yaml").write_text(
            "homeassistant:\n  name: Pack Monitor test\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: DE\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\n"
            "logger:\n  default: info\n")
        s = d / ".storage"
        _store(s / "core.config_entries", "core.config_entries", {"entries": [{
            "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 1, "domain": "mqtt",
            "title": "127.0.0.1", "source": "user", "unique_id": None, "disabled_by": None,
            "pref_disable_new_entities": False, "pref_disable_polling": False, "options": {},
            "data": {"broker": "127.0.0.1", "port": self.broker_port, "discovery": True,
                     "discovery_prefix": self.prefix}}]}, minor=2)
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, os.urandom(32).hex()
        _store(s / "auth", "auth", {
            "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True, "is_active": True,
                       "name": "test", "system_generated": False, "local_only": False}],
            "groups": [{"id": "system-admin", "name": "Administrators"}],
            "credentials": [],
            "refresh_tokens": [{
                "id": token_id, "user_id": user_id, "client_id": None, "client_name": "packmon tests",
                "client_icon": None, "token_type": "long_lived_access_token",
                "created_at": "2024-01-01T00:00:00+00:00", "access_token_expiration": 3650 * 86400,
                "token": os.urandom(32).hex(), "jwt_key": jwt_key, "last_used_at": None, "last_used_ip": None,
                "expire_at": None, "credential_id": None, "version": "2024.3.3"}],
        })
        _store(s / "onboarding", "onboarding", {"done": ["user", "core_config", "analytics", "integration"]},
               version=4)
        self.token = _jwt(token_id, jwt_key)

    # -- process -------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> HomeAssistant:
        self.write_config()
        self.out = open(self.dir / "hass.out", "wb")
        self.proc = subprocess.Popen([str(HASS), "-c", str(self.dir), "--skip-pip"], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Home Assistant exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if self.get("/api/") and "Connected to MQTT server" in self.log():
                    return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Home Assistant did not come up in {timeout} s: {self.log_tail()}")

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after a grace period: HA can hang on exit (non-daemonic threads)."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def problems(self) -> list[str]:
        """WARNING and ERROR lines (with what follows them) in home-assistant.log."""
        out = []
        for line in self.log().splitlines():
            if re.match(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ", line):
                out.append(line)
        return out

    # -- REST API ------------------------------------------------------------------------------
    def _req(self, path: str, body: dict | None = None, raw: bool = False) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read().decode()
        if raw:
            return data
        try:
            return json.loads(data)
        except ValueError:
            return data

    def get(self, path: str) -> Any:
        return self._req(path)

    def states(self, prefix: str = "") -> dict[str, dict]:
        """entity_id -> state object, for entity ids containing prefix."""
        return {s["entity_id"]: s for s in self.get("/api/states") if prefix in s["entity_id"]}

    def template(self, tpl: str) -> str:
        return self._req("/api/template", {"template": tpl}, raw=True)

    def wait(self, pred, timeout: float = 20.0, what: str = "condition"):  # noqa: ANN001
        deadline = time.time() + timeout
        last: Any = None
        while time.time() < deadline:
            try:
                last = pred()
            except (OSError, KeyError, ValueError) as e:
                last = e
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.25)
        raise AssertionError(f"Home Assistant: {what} not met in {timeout} s (last: {last!r})")

"""A Mosquitto broker locked down as a careful user would run it: TLS with a test CA, a password file and
an ACL. Certificates are made with the openssl command for each test session.

Users (password = name + "-pw-7Hq"):
  hub     readwrite packmonitor/garage/#  (what the hub needs: it reads back <prefix>/check)
  writer  write     packmonitor/garage/#  (may publish but not read: the hub's ACL check cannot pass)
  reader  read      #                     (the test's subscriber)
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .conftest import Mosquitto

USERS = {
    "hub": "topic readwrite packmonitor/garage/#",
    "writer": "topic write packmonitor/garage/#",
    "reader": "topic read #",
    "ha": "topic readwrite packmonitor/garage/#\ntopic readwrite homeassistant/#",
    # Home Assistant discovery allowed for sensors only: the hub also announces binary sensors
    "sensors": ("topic readwrite packmonitor/garage/#\ntopic readwrite homeassistant/sensor/#\n"
                "topic read homeassistant/status"),
}


def password(user: str) -> str:
    return f"{user}-pw-7Hq"


@dataclass
class Pki:
    dir: Path
    ca: Path  # the CA that signed the broker's and the client's certificates
    other_ca: Path  # a CA that signed nothing here
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    passwd: Path
    acl: Path


def available() -> tuple[bool, str]:
    for tool, pkg in (("openssl", "openssl"), ("mosquitto_passwd", "mosquitto")):
        if not shutil.which(tool) and not Path(f"/usr/bin/{tool}").exists():
            return False, f"{tool} is not installed (apt-get install {pkg})"
    if not Path(Mosquitto.binary()).exists():
        return False, "mosquitto is not installed (apt-get install mosquitto)"
    return True, ""


def make_pki(d: Path) -> Pki:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN=Pack Monitor test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subj, ext in (("server", "/CN=localhost", ["-extfile", "server.ext"]), ("client", "/CN=hub", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{name}.key",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", *ext)
    passwd = d / "passwd"
    passwd.write_text("")
    for user in USERS:
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password(user)], check=True,
                       capture_output=True)
    acl = d / "acl"
    acl.write_text("".join(f"user {u}\n{rule}\n\n" for u, rule in USERS.items()))
    return Pki(d, d / "ca.crt", d / "other-ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
               d / "client.key", passwd, acl)


def start(tmp: Path, pki: Pki, require_certificate: bool = False) -> Mosquitto:
    extra = (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
             f"require_certificate {'true' if require_certificate else 'false'}\n"
             f"password_file {pki.passwd}\nacl_file {pki.acl}\n")
    return Mosquitto(tmp, extra, anonymous=False).start()


def hub_mqtt(port: int, pki: Pki, user: str = "hub", **tls) -> dict:
    """The hub config's mqtt section for this broker."""
    return {"host": "127.0.0.1", "port": port, "user": user, "password": password(user), "timeout_s": 2,
            "tls": {"enabled": True, "ca": str(pki.ca), **tls}}


def spoil(mqtt: dict, case: str, pki: Pki) -> dict:
    """The hub's mqtt section with one thing wrong: password, ca, server_name or plain_tcp."""
    if case == "password":
        mqtt["password"] = "guess"
    elif case == "ca":
        mqtt["tls"]["ca"] = str(pki.other_ca)
    elif case == "server_name":
        mqtt["tls"]["server_hostname"] = "nas.example"
    elif case == "plain_tcp":
        mqtt["tls"] = {"enabled": False}
    else:
        raise ValueError(case)
    return mqtt


class Reader:
    """A paho subscriber over TLS as the `reader` user."""

    def __init__(self, port: int, pki: Pki, topic: str = "#") -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.username_pw_set("reader", password("reader"))
        self.c.tls_set(ca_certs=str(pki.ca))
        self.c.on_message = self._on
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic)
        self.c.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("reader did not subscribe")

    def _on(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def topics(self) -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, p, _ in self.messages}

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

# MQTT over TLS (MicroPython's ssl module: mbedTLS on the ESP32 and the unix port). Loaded only with
# mqtt.tls on (hub.preload), so a hub without TLS does not carry it in RAM. No hardware access.


# mbedTLS error codes that MicroPython raises as OSError(code) during a TLS handshake
ERRORS = {
    -0x2700: "TLS: the broker's certificate does not verify against mqtt.tls.ca, or does not carry the "
             "name in mqtt.tls.server_hostname",
    -0x7780: "TLS: the broker ended the handshake with an alert (does it want a client certificate?)",
    -0x7200: "TLS: the broker's reply is not TLS (is mqtt.port its TLS listener?)",
}


class TlsSockets:
    """Sockets that wrap themselves in TLS (through the port) once connected."""

    def __init__(self, mod, port, tls):
        self._mod = mod
        self._port = port
        self._tls = tls

    def socket(self, *args):
        return _TlsSock(self._mod.socket(*args), self._port, self._tls)

    def getaddrinfo(self, *args):
        return self._mod.getaddrinfo(*args)


class _TlsSock:
    def __init__(self, raw, port, tls):
        self.s = raw
        self._port = port
        self._tls = tls

    def connect(self, addr):
        self.s.connect(addr)
        self.s = self._port.ssl_wrap(self.s, self._tls)

    def write(self, buf, n=None):
        return self.s.write(buf) if n is None else self.s.write(memoryview(buf)[0:n])

    def read(self, n):
        return self.s.read(n)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def settimeout(self, t):
        self.s.settimeout(t)

    def close(self):
        self.s.close()


def der(path):
    """The first certificate or key in a PEM or DER file, as DER: MicroPython's mbedTLS binding takes
    DER bytes (a PEM file gives "invalid cert"), while users have PEM files from openssl or their CA."""
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(b"-----BEGIN")
    if start < 0:
        return data
    import binascii

    body = data.find(b"\n", start) + 1
    end = data.find(b"-----END", body)
    if body <= 0 or end < 0:
        raise ValueError("%s: a PEM block without its END line" % path)
    return binascii.a2b_base64(data[body:end])


def wrap(sock, tls):
    """TLS client socket over sock with MicroPython's ssl module (mbedTLS on the ESP32 and the unix
    port): certificate and server name checked unless tls["insecure"]."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls["insecure"]:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=der(tls["ca"]))
    if tls["cert"]:
        ctx.load_cert_chain(der(tls["cert"]), der(tls["key"]))
    return ctx.wrap_socket(sock, server_hostname=tls["server_hostname"])

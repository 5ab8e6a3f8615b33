# Home Assistant MQTT discovery.
class Discovery:
    def __init__(self, cfg, pub):
        self.cfg = cfg
        self.pub = pub
        self.done = False

    def restart(self):
        self.done = False

    def step(self, hub):
        if not self.done:
            self.done = self._send(hub)

    def _send(self, hub):
        bank = hub.bank
        pre = self.cfg["discovery"]["prefix"]
        bankname = self.cfg["bank"]
        dev = '"device":{"identifiers":["packmon_%s"],"name":"Pack Monitor %s","manufacturer":"Pack Monitor"}' % (
            bankname, bankname)
        avail = '"availability_topic":"%s/status"' % self.cfg["topic_prefix"]
        for i in range(bank.n):
            n = i + 1
            for kind, unit, dclass in (("voltage", "V", "voltage"), ("temperature", "\u00b0C", "temperature")):
                uid = "packmon_%s_pack%d_%s" % (bankname, n, kind)
                topic = "%s/sensor/%s/config" % (pre, uid)
                payload = (
                    '{"name":"Pack %d %s","unique_id":"%s","state_topic":"%s/pack/%d/%s",'
                    '"unit_of_measurement":"%s","device_class":"%s","state_class":"measurement",%s,%s}'
                    % (n, kind, uid, self.cfg["topic_prefix"], n, kind, unit, dclass, avail, dev)
                )
                if not self.pub._pub(topic.encode(), payload.encode(), True):
                    return False
        return True

# The estimator's topics, published by hub.publisher.Publisher.publish_cycle() (this module is imported only
# with a `battery` block: on a 100 KB heap the hub has no room for code it does not run). Payloads are built
# in the publisher's preallocated buffers, nothing allocated per cycle.
#
#   P/bank/soc, P/pack/<n>/soc    % with 2 decimals; the empty retained payload (deleted) while unknown
#   P/bank/time_to_full, P/bank/time_to_empty
#                                 minutes; empty while unknown or not (dis)charging faster than rest_c
#   P/bank/weakest                the pack named weakest; empty when none
#   P/pack/<n>/health             retained JSON once a minute (and after a connect): capacity_ah, soh (%),
#                                 resistance_mohm, resistance_growth (%), confidence (0..1), weakest; null
#                                 where not learned yet
# Without an estimator (a bad battery block) every one of them is published unknown once.
_VALUE = 1
_EMPTY = 0
_NOTHING = 2  # nothing published since the connect


# Home Assistant entities for these topics: rows of the entity table (hub/discovery.py documents the format;
# discovery adds them to its ROWS while a battery block is enabled). The plain topics are emptied when
# unknown (OWN: unavailable); per pack, the SOC also follows the pack's staleness (PACK), as does the
# learned health from P/pack/<n>/health (its fields null until learned: unknown).
ROWS = b"""\
battery;sensor;bank;soc;State of charge;/bank/soc;;OWN EXP;"unit_of_meas":"%","dev_cla":"battery","stat_cla":"measurement","sug_dsp_prc":1
battery;sensor;bank;time_to_full;Time to full;/bank/time_to_full;;OWN EXP;"unit_of_meas":"min","dev_cla":"duration","stat_cla":"measurement","sug_dsp_prc":0
battery;sensor;bank;time_to_empty;Time to empty;/bank/time_to_empty;;OWN EXP;"unit_of_meas":"min","dev_cla":"duration","stat_cla":"measurement","sug_dsp_prc":0
battery;sensor;bank;weakest;Weakest pack;/bank/weakest;;OWN EXP;"sug_dsp_prc":0,"ic":"mdi:battery-alert-variant-outline"
battery;sensor;pack;soc;Pack # SOC;/pack/#/soc;;OWN PACK EXP;"unit_of_meas":"%","dev_cla":"battery","stat_cla":"measurement","sug_dsp_prc":1
battery;sensor;pack;capacity;Pack # capacity;/pack/#/health;capacity_ah;PACK;"unit_of_meas":"Ah","stat_cla":"measurement","sug_dsp_prc":2,"ic":"mdi:battery-arrow-up-outline"
battery;sensor;pack;soh;Pack # state of health;/pack/#/health;soh;PACK;"unit_of_meas":"%","stat_cla":"measurement","sug_dsp_prc":1,"ic":"mdi:battery-heart-variant"
battery;sensor;pack;resistance;Pack # resistance;/pack/#/health;resistance_mohm;PACK;"unit_of_meas":"m\xce\xa9","stat_cla":"measurement","sug_dsp_prc":2,"ic":"mdi:omega"
battery;sensor;pack;health_confidence;Pack # health confidence;/pack/#/health;confidence;PACK DIAG;"stat_cla":"measurement","sug_dsp_prc":2,"ic":"mdi:check-decagram-outline"
battery;binary_sensor;pack;weakest;Pack # weakest;/pack/#/health;weakest;PACK;"dev_cla":"problem"
"""

class _State:
    def __init__(self, n):
        self.pack = bytearray(n)  # what P/pack/<n>/soc carries
        self.bank = bytearray(4)  # soc, time_to_full, time_to_empty, weakest
        self.health_due = True
        self.connects = -1  # the publisher's connect count when the retained topics were last set

    def reset(self):
        for i in range(len(self.pack)):
            self.pack[i] = _NOTHING
        for i in range(len(self.bank)):
            self.bank[i] = _NOTHING
        self.health_due = True


def _opt(pub, out, k, topic, v, decimals):
    """A retained plain value, or the empty retained payload once when it turns unknown (v < 0)."""
    if v >= 0:
        pub._pub(topic, pub.msg.clear().fixed(v, decimals).view(), True)
        out[k] = _VALUE
    elif out[k]:
        pub._pub(topic, b"", True)
        out[k] = _EMPTY


def publish(pub, hub):
    est = hub.estimator
    st = getattr(pub, "soc_state", None)  # kept on the publisher: one per hub
    if st is None:
        st = pub.soc_state = _State(len(pub.fresh_out))
    if st.connects != pub.connects:  # a new connection: the broker may have lost what we retained
        st.connects = pub.connects
        st.reset()
    bank = hub.bank
    bo = st.bank
    if est is None:
        _opt(pub, bo, 0, pub._t(b"/bank/soc"), -1, 0)
        for i in range(bank.n):
            if st.pack[i]:
                pub._pub(pub._t(b"/pack/", i + 1, b"/soc"), b"", True)
                pub._pub(pub._t(b"/pack/", i + 1, b"/health"), b"", True)
                st.pack[i] = _EMPTY
        return
    _opt(pub, bo, 0, pub._t(b"/bank/soc"), est.bank_soc, 2)
    _opt(pub, bo, 1, pub._t(b"/bank/time_to_full"), est.ttf_s // 60 if est.ttf_s >= 0 else -1, 0)
    _opt(pub, bo, 2, pub._t(b"/bank/time_to_empty"), est.tte_s // 60 if est.tte_s >= 0 else -1, 0)
    h = est.health
    _opt(pub, bo, 3, pub._t(b"/bank/weakest"), h.weakest if h.weakest else -1, 0)
    for i in range(bank.n):
        if not pub.connected:
            return
        _opt(pub, st.pack, i, pub._t(b"/pack/", i + 1, b"/soc"), est.soc[i], 2)
    if st.health_due or est.scans % 12 == 0:
        st.health_due = False
        for i in range(bank.n):
            pub._pub(pub._t(b"/pack/", i + 1, b"/health"), health_json(pub.msg.clear(), h, i), True)


def health_json(m, h, i):
    m.s(b'{"pack":').i(i + 1).s(b',"capacity_ah":')
    if h.cap_n[i] > 0:
        m.fixed(h.cap[i] // 360, 3)  # cq (10 mAs) -> mAh, shown as Ah
        m.s(b',"soh":').fixed(h.soh_pct10(i), 1)
    else:
        m.s(b'null,"soh":null')
    m.s(b',"resistance_mohm":')
    if h.r_n[i] > 0 and h.r[i] > 0:
        m.fixed(h.r[i], 3)  # micro-ohm, shown as milliohm
    else:
        m.s(b"null")
    m.s(b',"resistance_growth":')
    g = h.r_growth_pct(i)
    if g >= 0:
        m.i(g)
    else:
        m.s(b"null")
    m.s(b',"confidence":').fixed(h.confidence(i), 2)
    m.s(b',"weakest":').s(b"true" if h.weak[i] else b"false")
    return m.c(125).view()

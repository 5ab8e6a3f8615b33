# The shunt's MQTT topics (hub/shunt.py, hub/energy.py), published by hub/publisher.py once a cycle when a
# shunt is configured. A module of its own so a hub without a shunt does not carry it in its small heap.
#
#   <prefix>/bank/current  retained  amperes, + = charging; empty while unknown
#   <prefix>/bank/power    retained  watts (current x the bank voltage the nodes report); empty while the
#                                    current or any pack's voltage is unknown
#   <prefix>/bank/energy   retained  JSON: Wh and Ah in and out, lifetime and for `today` (UTC date from
#                                    NTP; null, with null daily values, until the time is known); the
#                                    energies again in kWh (for Home Assistant's Energy dashboard)
#   <prefix>/shunt         live      JSON: the chip's health and its counters of bad readings
#
# Payloads go through the publisher's preallocated buffers: no allocation per cycle.


# Home Assistant entities for these topics: rows of the entity table (hub/discovery.py documents the format;
# discovery adds them to its ROWS while a shunt block is enabled). Current and power are plain topics
# emptied when unknown (OWN: unavailable); energy in kWh for HA's Energy dashboard, lifetime and today's
# (null until NTP knows the day: unknown); charge and the chip's health as diagnostics.
ROWS = b"""\
shunt;sensor;bank;current;Current;/bank/current;;OWN EXP;"unit_of_meas":"A","dev_cla":"current","stat_cla":"measurement","sug_dsp_prc":2
shunt;sensor;bank;power;Power;/bank/power;;OWN EXP;"unit_of_meas":"W","dev_cla":"power","stat_cla":"measurement","sug_dsp_prc":0
shunt;sensor;bank;energy_in;Energy in;/bank/energy;in_kwh;EXP;"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3
shunt;sensor;bank;energy_out;Energy out;/bank/energy;out_kwh;EXP;"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3
shunt;sensor;bank;energy_in_today;Energy in today;/bank/energy;today_in_kwh;EXP;"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3
shunt;sensor;bank;energy_out_today;Energy out today;/bank/energy;today_out_kwh;EXP;"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3
shunt;sensor;bank;charge_in;Charge in;/bank/energy;in_ah;EXP DIAG;"unit_of_meas":"Ah","stat_cla":"total_increasing","sug_dsp_prc":2,"ic":"mdi:battery-plus-outline"
shunt;sensor;bank;charge_out;Charge out;/bank/energy;out_ah;EXP DIAG;"unit_of_meas":"Ah","stat_cla":"total_increasing","sug_dsp_prc":2,"ic":"mdi:battery-minus-outline"
shunt;binary_sensor;shunt;problem;Shunt problem;/shunt;ok == false;EXP DIAG ATTR;"dev_cla":"problem"
shunt;sensor;shunt;coverage;Shunt coverage;/shunt;coverage and (value_json.coverage * 100)|round(1);EXP DIAG;"unit_of_meas":"%","stat_cla":"measurement","sug_dsp_prc":1,"ic":"mdi:timer-sand-complete"
"""

class _State:
    def __init__(self):
        self.connects = -1  # the publisher's connect count when the retained topics were last set
        self.current_out = -1  # what <prefix>/bank/current carries: 1 a value, 0 empty, -1 not known
        self.power_out = -1
        self.date_day = None
        self.date = bytearray(10)


def publish(pub, hub):
    st = getattr(pub, "shunt_state", None)  # kept on the publisher: one per hub
    if st is None:
        st = pub.shunt_state = _State()
    if st.connects != pub.connects:  # a new connection: the broker may have lost what we retained
        st.connects = pub.connects
        st.current_out = -1
        st.power_out = -1
    s = hub.shunt
    bank = hub.bank
    if s.ok:
        pub._pub(pub._t(b"/bank/current"), pub.msg.clear().fixed(s.current_ma, 3).view(), True)
        st.current_out = 1
    elif st.current_out:
        pub._pub(pub._t(b"/bank/current"), b"", True)
        st.current_out = 0
    if s.ok and bank.complete:
        pub._pub(pub._t(b"/bank/power"), pub.msg.clear().fixed(power_dw(s.current_ma, bank.total_mv), 1).view(),
                 True)
        st.power_out = 1
    elif st.power_out:
        pub._pub(pub._t(b"/bank/power"), b"", True)
        st.power_out = 0
    _energy(pub, hub.energy, st)
    _diagnostics(pub, s)


def _energy(pub, e, st):
    m = pub.msg.clear().s(b'{"today":')
    daily = e.day is not None
    if daily:
        if st.date_day != e.day:
            date(st.date, e.day)
            st.date_day = e.day
        m.c(34).s(st.date).c(34)
    else:
        m.s(b"null")
    m.s(b',"in_wh":').fixed(e.in_mwh, 3).s(b',"out_wh":').fixed(e.out_mwh, 3)
    m.s(b',"in_ah":').fixed(e.in_mah, 3).s(b',"out_ah":').fixed(e.out_mah, 3)
    _opt(m.s(b',"today_in_wh":'), e.d_in_mwh, daily)
    _opt(m.s(b',"today_out_wh":'), e.d_out_mwh, daily)
    _opt(m.s(b',"today_in_ah":'), e.d_in_mah, daily)
    _opt(m.s(b',"today_out_ah":'), e.d_out_mah, daily)
    # the same energies in kWh (mWh shown with 6 decimals: exact text, no division in a Home Assistant
    # template, which could not divide a null without a warning)
    m.s(b',"in_kwh":').fixed(e.in_mwh, 6).s(b',"out_kwh":').fixed(e.out_mwh, 6)
    _opt(m.s(b',"today_in_kwh":'), e.d_in_mwh, daily, 6)
    _opt(m.s(b',"today_out_kwh":'), e.d_out_mwh, daily, 6)
    m.s(b',"wh_gaps":').i(e.wh_gaps)
    pub._pub(pub._t(b"/bank/energy"), m.c(125).view(), True)


def _diagnostics(pub, s):
    m = pub.msg.clear().s(b'{"chip":"').s(s.NAME_B).s(b'","ok":').s(b"true" if s.ok else b"false")
    m.s(b',"current":')
    if s.ok:
        m.fixed(s.current_ma, 3).s(b',"interval":').fixed(s.dt_ms, 3).s(b',"charge_as":').fixed(s.dq_mas, 3)
        m.s(b',"coverage":').fixed(s.coverage_ppm, 6)
    else:
        m.s(b'null,"interval":null,"charge_as":null,"coverage":null')
    m.s(b',"reads":').i(s.reads).s(b',"io_errors":').i(s.io_errors).s(b',"out_of_range":').i(s.out_of_range)
    m.s(b',"chip_resets":').i(s.chip_resets).s(b',"wrong_chip":').i(s.wrong_chip).s(b',"problem":')
    if s.ok or not s.problem:
        m.s(b"null")
    else:
        m.c(34).s(s.problem.replace('"', "'")).c(34)  # the rare path: allocates
    pub._pub(pub._t(b"/shunt"), m.c(125).view(), False)


def _opt(m, v, known, decimals=3):
    if known:
        m.fixed(v, decimals)
    else:
        m.s(b"null")


def power_dw(current_ma, total_mv):
    """current (mA) x voltage (mV) in 0.1 W, every intermediate below 2**30 (|current| < 2**20 mA,
    voltage < 2**19 mV): (a1 x 2**10 + a0) x v / 10**5 in two steps."""
    neg = current_ma < 0
    a = -current_ma if neg else current_ma
    a1 = a >> 10
    a0 = a & 1023
    p = a1 * total_mv
    q = p // 100000
    r = p % 100000
    out = (q << 10) + ((r << 10) + a0 * total_mv + 50000) // 100000
    return -out if neg else out


def date(buf, day):
    """YYYY-MM-DD of a day number (from 2000-01-01) into a 10-byte buffer."""
    from hub.energy import civil

    y, mo, d = civil(day)
    buf[0] = 48 + y // 1000
    buf[1] = 48 + y // 100 % 10
    buf[2] = 48 + y // 10 % 10
    buf[3] = 48 + y % 10
    buf[4] = 45
    buf[5] = 48 + mo // 10
    buf[6] = 48 + mo % 10
    buf[7] = 45
    buf[8] = 48 + d // 10
    buf[9] = 48 + d % 10

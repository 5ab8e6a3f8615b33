"""The bank snapshot (docs/protocol.md 3.5) on the Python model ring and through the hub's ring driver: a
mixed ring (firmware 1.1 nodes forward SNAP/SNAPREAD untouched and leave their slot empty; the hub refuses
snapshots on it), a SNAP corrupted on one hop (no node from there on takes it, the hub sees bad_crc and the
retry's SEQ tells old from new), values kept from the instant, and the hub's hub/snapshot.py naming the
positions that did not take it."""

from __future__ import annotations

from packmon.sim.model_ring import ModelRing, SimUart
from packmon.sim.node_model import NodeModel, NodeState, make_frame

from hub import codec
from hub.ring import Ring, RingError
from hub.snapshot import Snapshot
from tests.conftest import FakeClock

MV = [3300, 3310, 3320, 3330, 3340]


def snapread_records(ring: Ring, n: int) -> list[tuple[int, int, int] | None]:
    out: list[tuple[int, int, int] | None] = []
    for i in range(n):
        o = codec.slot(i)
        out.append(None if ring.rx[o] == 0 else (ring.rx[o], codec.rec_mv(ring.rx, o), codec.rec_scans(ring.rx, o)))
    return out


def mixed_ring(old: tuple[int, ...] = (2,)) -> tuple[ModelRing, Ring]:
    eng = ModelRing(len(MV), mv=list(MV))
    for i in old:
        eng.nodes[i].s.fw = (1, 1)  # firmware 1.1: no snapshot
    ring = Ring(SimUart(eng), clock=FakeClock(0))
    assert ring.enumerate() == len(MV)
    ring.scan(len(MV))
    return eng, ring


def test_old_nodes_leave_their_slot_empty_and_add_no_hop() -> None:
    eng, ring = mixed_ring(old=(2,))
    seq = ring.snap(5, 4 * 127 + 154, 127 * 256)
    assert codec.done_of(ring.rx)
    # each node of firmware 1.4 waits DELAY less ELAPSED, the hops before it; the old node adds none, so the
    # positions after it wait one hop too long (why the hub refuses snapshots on such a ring)
    waits = [n.s.snap_wait for n in eng.nodes]
    assert waits == [4 * 127 + 154, 3 * 127 + 154, 0, 2 * 127 + 154, 127 + 154]
    assert codec.snap_elapsed(ring.rx) == codec.SNAP_ELAPSED0 + 4 * 127 * 256
    for i in range(5):  # the packs move after the instant
        eng.set_pack(i, mv=MV[i] + 100)
    assert ring.snapread(5) == 5
    recs = snapread_records(ring, 5)
    assert recs[2] is None
    assert [r for i, r in enumerate(recs) if i != 2] == [(i + 1, MV[i], seq) for i in (0, 1, 3, 4)]
    d = codec.decode(bytes(ring.rx[:ring.rx_len]))
    assert d["missing"] == [3] and [r["snap"] for r in d["records"]] == [seq] * 4


def test_snap_corrupted_on_one_hop_is_not_taken_there_and_the_retry_supersedes_it() -> None:
    """Node by node: a bit flipped on the hop into node 2. Node 2 finds the CRC bad and takes nothing; it passes
    the error on in the CRC (protocol 1.2), so node 3 does not take it either and the hub sees bad_crc; node 2
    names itself in the next frame (ring_fault); the hub sends a new SNAP, whose SEQ every node then carries."""
    nodes = [NodeModel(NodeState(address=i + 1, mv=3300 + i)) for i in range(3)]

    def round_trip(frame: bytes, flip_into: int | None = None) -> bytes:
        data = frame
        for k, node in enumerate(nodes):
            if k == flip_into:
                b = bytearray(data)
                b[6] ^= 0x10
                data = bytes(b)
            out = bytearray()
            for byte in data:
                out += node.feed(byte)
            data = bytes(out)
        return data

    slot = (8192).to_bytes(2, "little") + (124 * 256).to_bytes(2, "little") + bytes([0, 128, 0, 0]) + bytes(56)
    back = round_trip(make_frame(codec.CMD_SNAP, 70, 0, slot), flip_into=1)
    assert codec.check(back, len(back)) == codec.ERR_BAD_CRC
    assert [n.s.snap_seq for n in nodes] == [70, 0, 0]
    for n in nodes:
        n.take_snapshot()
    back = round_trip(make_frame(codec.CMD_SNAPREAD, 71, 0, bytes(24)))
    assert codec.check(back, len(back)) == codec.ERR_RING_FAULT and codec.fault_of(back) == 2
    assert [back[codec.slot(i)] for i in range(3)] == [1, 0, 0]  # only node 1 took SNAP 70
    back = round_trip(make_frame(codec.CMD_SNAP, 72, 0, slot))
    assert codec.check(back, len(back)) == codec.OK
    for n in nodes:
        n.take_snapshot()
    d = codec.decode(round_trip(make_frame(codec.CMD_SNAPREAD, 73, 0, bytes(24))))
    assert d["missing"] == [] and [r["snap"] for r in d["records"]] == [72, 72, 72]


def test_hub_refuses_snapshots_on_a_ring_with_old_firmware_and_names_the_positions() -> None:
    eng, ring = mixed_ring(old=(1, 4))
    clock = ring.clock
    snap = Snapshot(8, 1230)
    called: list[int] = []
    sent = ring.sent
    assert not snap.take(ring, 5, clock, lambda: called.append(1))
    assert ring.sent - sent == 5  # one INFO a position
    assert "refused: position(s) 2, 5 run firmware before 1.4" in snap.problem
    assert called == [1] and not snap.valid and list(snap.ok[:5]) == [0] * 5
    sent = ring.sent
    assert not snap.take(ring, 5, clock, lambda: None)
    assert ring.sent == sent  # read once for this pack count; no SNAP goes out on this ring


def test_hub_snapshot_marks_missing_positions_and_reads_the_shunt_at_the_instant() -> None:
    eng, ring = mixed_ring(old=())
    clock = ring.clock
    snap = Snapshot(8, 1230)
    assert snap.take(ring, 5, clock, lambda: None) and snap.missing == 0
    # positions 2 and 5 reset (no address until the next SCAN): they cannot take the next snapshot
    for i in (1, 4):
        eng.nodes[i].s.address = 0
    when: list[int] = []
    t0 = clock.ticks_ms()
    assert snap.take(ring, 5, clock, lambda: when.append(clock.ticks_ms()))
    assert list(snap.ok[:5]) == [1, 0, 1, 1, 0] and snap.missing == 2
    assert [snap.mv[i] for i in (0, 2, 3)] == [MV[0], MV[2], MV[3]]
    assert "positions did not take it (2, 5)" in snap.problem
    # the instant: the SNAP's own bytes plus DELAY after the hub began sending it
    lead = codec.frame_len(codec.SNAP_CNT) * 11 * 1000 / 9600 + snap.delay_ticks(5) / 38.4
    assert len(when) == 1 and lead <= when[0] - t0 <= lead + 2
    said = snap.problem
    assert snap.take(ring, 5, clock, lambda: None) and snap.problem == said  # the same set: no new text


class _DropSnap:
    """An engine whose SNAP (or SNAPREAD) frames never come back."""

    def __init__(self, eng: ModelRing, cmd: int) -> None:
        self.eng = eng
        self.cmd = cmd
        self.dropped = 0

    def exchange(self, tx: bytes, stop_bits: int = 1):
        ex = self.eng.exchange(tx, stop_bits)
        if tx[1] == self.cmd:
            self.dropped += 1
            ex.rx = ex.rx[:-3]  # truncated
        return ex


def test_hub_snapshot_lost_three_times_is_reported_never_replaced() -> None:
    for cmd in (codec.CMD_SNAP, codec.CMD_SNAPREAD):
        eng, ring = mixed_ring(old=())
        snap = Snapshot(8, 1230)
        assert snap.take(ring, 5, ring.clock, lambda: None) and snap.valid
        drop = _DropSnap(eng, cmd)
        ring.uart = SimUart(drop)
        called: list[int] = []
        assert not snap.take(ring, 5, ring.clock, lambda c=called: c.append(1))
        assert drop.dropped == 3 and not snap.valid and list(snap.ok[:5]) == [0] * 5
        assert "snapshot" in snap.problem and "lost" in snap.problem
        assert called == [1]  # the shunt is still read once in the cycle


def test_ring_snap_rejects_nothing_new_for_old_frames() -> None:
    """The hub's decoder still names every bad frame: a SNAPREAD with a slot in the wrong place."""
    eng, ring = mixed_ring(old=())
    wrong = make_frame(codec.CMD_SNAPREAD, 9, 0, bytes(8) + bytes([1]) + bytes(7), nodes=2)
    assert codec.check(wrong, len(wrong)) == codec.ERR_INCONSISTENT
    try:
        ring.request(codec.CMD_SNAPREAD, 0, 0)
    except RingError as e:  # the model ring answers CNT 0 with NODES 5 > CNT: slot_overflow
        assert e.name == "slot_overflow"
    else:
        raise AssertionError("a SNAPREAD with more nodes than slots must be rejected")


def test_hub_estimator_takes_resistance_from_snapshot_pairs(tmp_path) -> None:
    """The whole hub (no network) with a modelled INA228: at every current step each pack's resistance
    sample comes from two snapshots (Estimator.snap_r), except that of a pack whose snapshot never comes back,
    which falls back to scan-to-scan readings; every estimate lands on the packs' own resistance."""
    from packmon.sim import ina

    from hub import config
    from hub.app import Hub
    from hub.port import HostPort, install_cpython_shims

    install_cpython_shims()
    clock = FakeClock(100_000)
    amps = [0.0]
    r_ohm = [0.010, 0.012, 0.014, 0.016]
    model = ina.make_model("ina228", 0.0005, lambda t: amps[0], lambda: clock.t / 1000)
    raw = {"mqtt": {"host": "127.0.0.1", "port": 1, "timeout_s": 1}, "scan_interval_s": 1, "stale_after_s": 5,
           "shunt": {"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
           "battery": {"enabled": True, "chemistry": "nmc", "capacity_ah": 100, "rest_s": 60},
           "state_file": str(tmp_path / "state.json")}
    cfg = config.validate(raw, need_wifi=False)
    assert cfg["snapshot"]["enabled"] is True  # auto: shunt and battery
    eng = ModelRing(4, mv=[3700] * 4)
    eng.nodes[3].take_snapshot = lambda: False  # type: ignore[method-assign]  # pack 4 never has one ready
    hub = Hub(cfg, HostPort(SimUart(eng), clock=clock, log=lambda lv, m: None, i2c=model, wall=lambda: None))

    def cycle() -> None:
        for i in range(4):
            eng.set_pack(i, mv=round(3700 + r_ohm[i] * amps[0] * 1000))  # + = charging
        hub.run_once(network=False)
        clock.sleep_ms(1000)

    for _ in range(70):  # at rest: the SOC resync
        cycle()
    est = hub.estimator
    assert est is not None, hub.battery_error
    assert all(est.known[i] for i in range(4))
    assert list(hub.snap.ok[:4]) == [1, 1, 1, 0] and "(4)" in hub.snap.problem
    for k in range(12):  # current steps 0 <-> 20 A right after a read: early in the interval
        amps[0] = -20.0 if k % 2 == 0 else 0.0  # a 20 A load on and off
        for _ in range(3):
            cycle()
    assert est.snap_r >= 3 * 10
    for i in range(4):
        assert est.health.r_n[i] >= 10
        assert abs(est.health.r[i] / 1e6 - r_ohm[i]) / r_ohm[i] < 0.05, (i, est.health.r[i])


def test_resistance_with_snapshots_against_without_in_the_same_run() -> None:
    """bench --snapshot's comparison: with a steady load step both estimators agree; with a ripple on the
    current the scan-to-scan samples pair voltages and a current of different moments, the snapshot's do not."""
    from packmon.bench_snapshot import resistance_compare

    calm = resistance_compare(8, 0.0006, steps=20, ripple_a=0.0)
    assert calm["plain_max_pct"] == calm["snap_max_pct"] < 1.0
    rippled = resistance_compare(8, 0.0006, steps=20, ripple_a=5.0, ripple_hz=2.3)
    assert rippled["snap_max_pct"] < 2.0 < 5.0 < rippled["plain_max_pct"]
    assert rippled["snap_samples"] >= 8 * 20 and rippled["snap_samples_min"] >= 20


def test_hub_reads_the_firmware_again_after_a_reset_or_an_enumerate() -> None:
    """A node swapped for one with old firmware shows up as a reset (or a new ENUMERATE): the hub reads every
    position's version again before the next snapshot, and refuses from then on, naming it."""
    from types import SimpleNamespace

    from hub import snapshot

    eng, ring = mixed_ring(old=())
    errors: list[str] = []
    hub = SimpleNamespace(snap=Snapshot(8, 1205), ring=ring, enumerations=1,
                          bank=SimpleNamespace(n=5, resets=[0] * 8),
                          port=SimpleNamespace(clock=ring.clock, feed_watchdog=lambda: None),
                          _error=lambda now, text: errors.append(text), log=lambda level, text: None)
    sent = ring.sent
    snapshot.step(hub, 0, lambda: None)
    assert ring.sent - sent == 5 + 3 and hub.snap.valid  # INFO x 5, the warm-up SNAP, SNAP, SNAPREAD
    sent = ring.sent
    snapshot.step(hub, 0, lambda: None)
    assert ring.sent - sent == 2 and hub.snap.valid  # versions known: SNAP, SNAPREAD only
    eng.nodes[2].s.fw = (1, 3)  # node 3 swapped for one with firmware 1.3 ...
    hub.bank.resets[2] += 1  # ... which the scans see as a reset
    sent = ring.sent
    snapshot.step(hub, 0, lambda: None)
    assert ring.sent - sent == 5 and not hub.snap.valid
    assert len(errors) == 1 and "position(s) 3 run firmware before 1.4" in errors[0]
    snapshot.step(hub, 0, lambda: None)
    assert len(errors) == 1  # said once
    eng.nodes[2].s.fw = (1, 4)  # updated
    hub.enumerations += 1
    snapshot.step(hub, 0, lambda: None)
    assert hub.snap.valid and not hub.snap.old

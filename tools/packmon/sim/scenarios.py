"""Scenarios: what the simulated packs do over time, applied to any ring engine.

A scenario knows the truth (each pack's voltage in mV and temperature in 0.1 degC) at every step, so
tests can compare everything the hub publishes with it. Events (resets, removals, noise) are applied
to the engine through its interface: set_pack, reset_node, remove_node, insert_node, ber, broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMES = ("fixed", "discharge", "drift", "reset", "remove", "noise", "break")


@dataclass
class Scenario:
    name: str
    packs: int
    ber: float = 1e-4
    events: list[str] = field(default_factory=list)  # what happened at the last apply(), for the UI

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(f"unknown scenario {self.name!r}; choose from {', '.join(NAMES)}")
        self.removed = False

    def base_mv(self, i: int) -> int:
        return 3280 + (i * 37) % 60  # distinct, realistic spread of a balanced Li-ion bank

    def base_temp(self, i: int) -> int:
        return 215 + (i * 13) % 40

    def truth(self, step: int) -> list[tuple[int, int]]:
        """(mV, 0.1 degC) of every pack at this step, in physical order."""
        out = []
        for i in range(self.packs):
            mv, t = self.base_mv(i), self.base_temp(i)
            if self.name == "discharge":
                mv -= 2 * step
                t += step // 10
            elif self.name == "drift" and i == min(1, self.packs - 1):
                mv += 6 * step
            out.append((mv, t))
        return out

    def apply(self, engine, step: int) -> None:
        """Bring the engine to this step's state (call before the step's scan)."""
        self.events = []
        truth = self.truth(step)
        if self.name == "remove" and self.packs > 2:
            victim = 1
            if step == 5 and not self.removed:
                engine.remove_node(victim)
                self.removed = True
                self.events.append(f"node {victim + 1} removed from the ring")
            elif step == 12 and self.removed:
                engine.insert_node(victim)
                self.removed = False
                self.events.append(f"node {victim + 1} put back")
        phys = [i for i in range(self.packs) if not (self.removed and i == 1)]
        for pos, i in enumerate(phys):
            mv, t = truth[i]
            engine.set_pack(pos, mv=mv, temp=t)
        if self.name == "reset" and step % 10 == 5:
            victim = self.packs // 2
            engine.reset_node(victim)
            self.events.append(f"node {victim + 1} reset")
        if self.name == "noise":
            engine.ber = self.ber
        if self.name == "break":
            engine.broken = 8 <= step % 20 < 12
            if step % 20 == 8:
                self.events.append("ring broken")
            if step % 20 == 12:
                self.events.append("ring closed again")

    def expected(self, step: int) -> list[tuple[int, int]]:
        """The truth in ring order (what the hub should report as pack 1..n at this step)."""
        t = self.truth(step)
        if self.removed:
            return [t[i] for i in range(self.packs) if i != 1]
        return t

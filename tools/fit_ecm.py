"""Fit the closed loop's light equivalent-circuit cell (tools/packmon/sim/ecm.py) to PyBaMM's Chen2020 cell.

Run once (needs `pip install pybamm`, ~800 MB; nothing else in the project needs it):

    python tools/fit_ecm.py            # writes tools/packmon/sim/ecm_chen2020.json

What it does, all on PyBaMM's SPMe with a lumped thermal model (the open-loop truth of the estimator work):
  * a pulse-rest discharge from full: 1C pulses (1 min near the top, where protection acts; 4 min below),
    each followed by 20 min of rest. The end of every rest is an OCV point; the voltage step at the start
    of every pulse gives R0; the first 2 minutes of each relaxation, fitted to v_inf - a*exp(-t/tau),
    give R1 (= a / I) and tau (= R1 * C1).
  * a 2C discharge whose temperature trace, with PyBaMM's own heat generation, is fitted to
    C dT/dt = Q - hA (T - T_amb) for the lumped heat capacity C and the cooling conductance hA.
The data file is small and committed; tests and `packmon protect-check` read only the file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "packmon" / "sim" / "ecm_chen2020.json"


def main() -> int:
    try:
        import numpy as np
        import pybamm
    except ImportError:
        print("fit_ecm: needs PyBaMM (pip install pybamm)", file=sys.stderr)
        return 1
    t0 = time.time()
    params = pybamm.ParameterValues("Chen2020")
    cap = float(params["Nominal cell capacity [A.h]"])
    model = pybamm.lithium_ion.SPMe({"thermal": "lumped"})
    steps: list[str] = ["Rest for 20 minutes"]
    for k in range(24):
        steps += [f"Discharge at 1C for {1 if k < 6 else 4} minutes or until 2.6 V", "Rest for 20 minutes"]
    exp = pybamm.Experiment(steps, period="2 seconds")
    sim = pybamm.Simulation(model, parameter_values=params, experiment=exp, solver=pybamm.IDAKLUSolver())
    sol = sim.solve(initial_soc=1.0)
    soc, ocv, r0s, r1s, taus = [1.0], [], [], [], []
    dis = 0.0
    prev_rest = None
    # walk the steps of the experiment: rest, pulse, rest, pulse, ...
    all_steps = [s for cyc in sol.cycles for s in cyc.steps]
    for s in all_steps:
        t = s["Time [s]"].entries
        v = s["Voltage [V]"].entries
        i = s["Current [A]"].entries
        if abs(i[-1]) < 1e-6:  # a rest
            ocv.append(float(v[-1]))
            if prev_rest is not None and len(ocv) > 1:
                soc.append(1.0 - dis / cap)
            # relaxation fit over the first 120 s after a pulse: v = v_inf - a exp(-t/tau)
            if prev_rest is not None:
                i_pulse = prev_rest
                tt = t - t[0]
                sel = tt <= 120
                vinf = v[-1]
                y = vinf - v[sel]
                good = y > 1e-5
                if good.sum() >= 5:
                    slope, icpt = np.polyfit(tt[sel][good], np.log(y[good]), 1)
                    tau = -1.0 / slope
                    a = float(np.exp(icpt))
                    r1s.append(a / i_pulse)
                    taus.append(tau)
            prev_rest = None
        else:  # a discharge pulse (current > 0 in PyBaMM: discharge)
            i_p = float(np.median(i))
            dis += float(np.trapezoid(i, t)) / 3600.0
            # R0: the step from the rested voltage to the first point of the pulse
            if ocv:
                r0s.append((ocv[-1] - float(v[0])) / i_p)
            prev_rest = i_p
    n = min(len(soc), len(ocv))
    soc, ocv = soc[:n], ocv[:n]
    order = sorted(range(n), key=lambda k: soc[k])
    table_soc = [round(soc[k], 4) for k in order]
    table_ocv = [round(ocv[k], 4) for k in order]
    r0 = float(np.median(r0s))
    r1 = float(np.median(r1s))
    tau = float(np.median(taus))
    # -- thermal: C dT/dt = Q - hA (T - T_amb), fitted on a 2C discharge ------------------------------
    sim2 = pybamm.Simulation(model, parameter_values=params, solver=pybamm.IDAKLUSolver(),
                             experiment=pybamm.Experiment(["Discharge at 2C until 2.6 V", "Rest for 30 minutes"],
                                                          period="5 seconds"))
    s2 = sim2.solve(initial_soc=1.0)
    t = s2["Time [s]"].entries
    temp = s2["X-averaged cell temperature [K]"].entries
    vol = float(params["Cell volume [m3]"])
    q = s2["Volume-averaged total heating [W.m-3]"].entries * vol
    amb = float(params["Ambient temperature [K]"])
    dtdt = np.gradient(temp, t)
    # [dT/dt, (T - amb)] @ [C, hA] = Q
    a_mat = np.vstack([dtdt, temp - amb]).T
    (c_th, ha), *_ = np.linalg.lstsq(a_mat, q, rcond=None)
    data = {
        "source": "PyBaMM %s, Chen2020 (LG M50 21700, NMC811/graphite-SiOx), SPMe + lumped thermal; "
                  "fitted by tools/fit_ecm.py" % pybamm.__version__,
        "capacity_ah": cap,
        "soc": table_soc,
        "ocv_v": table_ocv,
        "r0_ohm": round(r0, 6),
        "r1_ohm": round(r1, 6),
        "tau1_s": round(tau, 2),
        "heat_capacity_j_per_k": round(float(c_th), 3),
        "cooling_w_per_k": round(float(ha), 5),
        "pulses": len(r0s),
        "r0_spread": [round(float(min(r0s)), 6), round(float(max(r0s)), 6)],
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"fit_ecm: {len(table_soc)} OCV points {table_ocv[0]:.3f}..{table_ocv[-1]:.3f} V, R0 {r0 * 1000:.2f} mOhm, "
          f"R1 {r1 * 1000:.2f} mOhm, tau {tau:.1f} s, C {c_th:.1f} J/K, hA {ha:.4f} W/K "
          f"({time.time() - t0:.1f} s) -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

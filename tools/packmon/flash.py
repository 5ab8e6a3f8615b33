"""`packmon flash-node`: build the node firmware (make -C node_fw, showing its size against the budget)
and flash it: a bare ATtiny85 with avrdude and a USBasp (--fuses once for a new chip), or a Digispark
with micronucleus (built for half its 16.5 MHz clock: the image sets CLKPR at start). Every command line
is shown before it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_USAGE, ROOT, ToolError, display_path, need_tool, run_shown, shown

FW = ROOT / "node_fw"
# docs/node_fw.md and platformio.ini: 8 MHz internal RC without CKDIV8, BOD 2.7 V + SPI programming, efuse
FUSES = (("lfuse", "0xE2"), ("hfuse", "0xDD"), ("efuse", "0xFF"))
DIGISPARK_F_CPU = "8250000"  # half the 16.5 MHz PLL clock micronucleus leaves: in spec down to 2.7 V
INSTALL = {
    "make": "sudo apt-get install make",
    "avr-gcc": "sudo apt-get install gcc-avr binutils-avr avr-libc",
    "avrdude": "sudo apt-get install avrdude",
    "micronucleus": ("it is not in Debian 12's archive: build the command-line tool from "
                     "https://github.com/micronucleus/micronucleus (commandline/, needs libusb-dev), "
                     "or flash with PlatformIO: `pio run -e digispark -t upload`"),
}


def build_cmd(programmer: str, fw: Path = FW) -> list[str]:
    cmd = ["make", "-C", display_path(fw)]
    if programmer == "micronucleus":
        cmd.append(f"F_CPU={DIGISPARK_F_CPU}")
    return cmd


def default_hex(programmer: str, fw: Path = FW) -> str:
    """What build_cmd produces (node_fw/Makefile: the 8 MHz image is also copied to build/node.hex)."""
    if programmer == "micronucleus":
        return display_path(fw / "build" / f"hw-{DIGISPARK_F_CPU}" / "node.hex")
    return display_path(fw / "build" / "node.hex")


def avrdude_base(bitclock: float | None = None) -> list[str]:
    base = ["avrdude", "-c", "usbasp", "-p", "t85"]
    if bitclock:
        base += ["-B", "%g" % bitclock]
    return base


def flash_cmds(programmer: str, hexfile: str, fuses: bool = False, bitclock: float | None = None) -> list[list[str]]:
    """The programming command lines, in order (pure: tests check the exact argv)."""
    if programmer == "micronucleus":
        return [["micronucleus", "--run", hexfile]]
    cmds = []
    if fuses:
        fuse_args: list[str] = []
        for name, value in FUSES:
            fuse_args += ["-U", f"{name}:w:{value}:m"]
        cmds.append(avrdude_base(bitclock) + fuse_args)
    cmds.append(avrdude_base(bitclock) + ["-U", f"flash:w:{hexfile}:i"])
    return cmds


def plan(programmer: str, fuses: bool = False, hexfile: str | None = None,
         bitclock: float | None = None) -> list[list[str]]:
    """Build (unless a hex file is given) and flash."""
    cmds = [] if hexfile else [build_cmd(programmer)]
    return cmds + flash_cmds(programmer, hexfile or default_hex(programmer), fuses, bitclock)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flash-node", help="build and flash the node firmware (USBasp or Digispark)",
                       description=__doc__)
    p.add_argument("--programmer", choices=("usbasp", "micronucleus"), default="usbasp",
                   help="usbasp: bare ATtiny85 with avrdude (default); micronucleus: Digispark")
    p.add_argument("--fuses", action="store_true",
                   help="write the fuses first (once, for a new bare chip): " +
                        " ".join(f"{n}={v}" for n, v in FUSES))
    p.add_argument("--hex", metavar="FILE", help="flash this image instead of building one")
    p.add_argument("--bitclock", type=float, metavar="US",
                   help="avrdude -B: a slower programming clock (a new chip runs at 1 MHz; try 32)")
    p.add_argument("--dry-run", action="store_true", help="show the commands without running them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.fuses and args.programmer != "usbasp":
        raise ToolError("--fuses needs --programmer usbasp: a Digispark's fuses belong to its bootloader", EXIT_USAGE)
    if args.hex and not Path(args.hex).is_file():
        raise ToolError(f"--hex {args.hex}: no such file", EXIT_USAGE)
    cmds = plan(args.programmer, args.fuses, args.hex, args.bitclock)
    if args.dry_run:
        for c in cmds:
            print("$ " + shown(c))
        return 0
    tools = {c[0] for c in cmds}
    if "make" in tools:
        tools.add("avr-gcc")
    for tool in ("make", "avr-gcc", "avrdude", "micronucleus"):
        if tool in tools:
            need_tool(tool, INSTALL[tool])
    for c in cmds:
        if c[0] == "micronucleus":
            print("plug the Digispark in now (or re-plug it): micronucleus waits for its bootloader", flush=True)
        try:
            run_shown(c)
        except ToolError as e:
            if c[0] == "avrdude":
                raise ToolError(f"{e}\n  hints: is the USBasp plugged in (`lsusb` shows 16c0:05dc) and may you use "
                                "it (udev rule / plugdev group)? Is the ATtiny85 powered and seated right? A new "
                                "chip runs at 1 MHz: try --bitclock 32.", e.code) from e
            raise
    print("flashed " + (args.hex or default_hex(args.programmer)))
    return 0

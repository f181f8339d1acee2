"""Hardware behind small interfaces: scanner input, lock relay, door sensor.

Scanner: `await read() -> str` (one scanned code). Relay: `await pulse(ms)` and
`await hold(active)`. Contacts (the door sensor and the exit, tamper, power and
fire inputs): `active` and `on_change(callback(active))`. Each has a simulated
implementation (tests, demo, benchmarks) and real ones: stdin / serial / TCP
line scanners, a gpiod or serial relay board, GPIO contacts. `gpiod` (Linux GPIO
character device) is imported only when a GPIO driver is configured.
"""

import asyncio
import logging
import os
import sys
import termios
import tty

log = logging.getLogger("gate_bridge.drivers")


# -- scanners ---------------------------------------------------------------------------

class StreamScanner:
    """Reads newline-terminated codes from an asyncio StreamReader (stdin, serial, TCP)."""

    def __init__(self, reader: asyncio.StreamReader, closable=None):
        self.reader = reader
        self.closable = closable  # the pipe transport or TCP writer behind the reader

    def close(self) -> None:
        if self.closable is not None:
            self.closable.close()

    async def read(self) -> str:
        while True:
            line = await self.reader.readline()
            if not line:
                raise EOFError("scanner input closed")
            text = line.decode(errors="replace").strip()
            if text:
                return text


async def _pipe_scanner(file) -> StreamScanner:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), file)
    return StreamScanner(reader, transport)


def _open_serial(device: str, baud: int):
    """A raw serial port at `baud` as a binary file (stdlib termios; no pyserial needed)."""
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    speed = getattr(termios, f"B{baud}")
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return os.fdopen(fd, "r+b", buffering=0)


async def stdin_scanner() -> StreamScanner:
    return await _pipe_scanner(sys.stdin.buffer)


async def serial_scanner(device: str, baud: int = 9600) -> StreamScanner:
    return await _pipe_scanner(_open_serial(device, baud))


async def tcp_scanner(host: str, port: int) -> StreamScanner:
    """Network QR readers that serve scanned codes as lines on a TCP port."""
    return StreamScanner(*await asyncio.open_connection(host, port))


class SimulatedScanner:
    def __init__(self):
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def feed(self, text: str) -> None:
        self.queue.put_nowait(text)

    async def read(self) -> str:
        return await self.queue.get()


# -- relays -------------------------------------------------------------------------------

class Relay:
    """Drives the lock. Subclasses implement `_set(active)`; pulses are timed here."""

    def __init__(self):
        self.listeners = []  # callables(active: bool): the simulated door listens
        self.release: asyncio.Task | None = None

    async def _set(self, active: bool) -> None:
        raise NotImplementedError

    async def hold(self, active: bool) -> None:
        await self._set(active)
        for listener in self.listeners:
            listener(active)

    async def pulse(self, ms: int) -> None:
        """Energise for `ms` milliseconds (releases the lock), without blocking the caller."""
        await self.hold(True)
        if self.release is not None:
            self.release.cancel()  # a new pulse extends the open time
        self.release = asyncio.create_task(self._release_after(ms / 1000))

    async def _release_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.hold(False)


class SimulatedRelay(Relay):
    def __init__(self, name: str = "relay"):
        super().__init__()
        self.name = name
        self.active = False
        self.pulses = 0

    async def _set(self, active: bool) -> None:
        self.pulses += active and not self.active
        self.active = active
        log.info("%s %s", self.name, "energised" if active else "released")


class GpiodRelay(Relay):
    """A relay on a GPIO line through the Linux character device (libgpiod v2 bindings)."""

    def __init__(self, chip: str, line: int, active_low: bool = False):
        import gpiod  # optional: only on boxes that have it
        from gpiod.line import Direction, Value
        super().__init__()
        self.line, self.values = line, (Value.INACTIVE, Value.ACTIVE)
        self.request = gpiod.request_lines(chip, consumer="xiaoqu-bridge", config={
            line: gpiod.LineSettings(direction=Direction.OUTPUT, active_low=active_low,
                                     output_value=Value.INACTIVE)})

    async def _set(self, active: bool) -> None:
        self.request.set_value(self.line, self.values[active])


class SerialRelay(Relay):
    """USB/serial relay boards that switch on fixed byte strings (e.g. LCUS-1: A0 01 01 A2)."""

    def __init__(self, device: str, on: bytes, off: bytes, baud: int = 9600):
        super().__init__()
        self.port = _open_serial(device, baud)
        self.commands = (off, on)

    async def _set(self, active: bool) -> None:
        self.port.write(self.commands[active])


# -- contacts: the door, the exit button, tamper, power and fire-panel inputs ----------------

class Contact:
    """A two-state input with change callbacks: a door contact (active = open), an exit
    button (pressed), a tamper switch (cover off), a power-fail line (mains lost) or a
    fire-panel relay (release the doors)."""

    def __init__(self):
        self.active = False
        self.callbacks = []

    def on_change(self, callback) -> None:
        self.callbacks.append(callback)

    def _changed(self, active: bool) -> None:
        if active != self.active:
            self.active = active
            for callback in self.callbacks:
                callback(active)


class SimulatedContact(Contact):
    def set(self, active: bool) -> None:
        self._changed(active)


class SimulatedDoor(SimulatedContact):
    """A door that someone pushes open shortly after the lock releases (when `auto`)."""

    def __init__(self, relay: Relay | None = None, auto: bool = True, open_after: float = 0.05,
                 close_after: float = 0.5):
        super().__init__()
        self.auto, self.open_after, self.close_after = auto, open_after, close_after
        if relay is not None:
            relay.listeners.append(self._relay_changed)

    def _relay_changed(self, active: bool) -> None:
        if active and self.auto:
            loop = asyncio.get_running_loop()
            loop.call_later(self.open_after, self.set, True)
            loop.call_later(self.open_after + self.close_after, self.set, False)


class GpioContact(Contact):
    """A contact on a GPIO line (Linux character device, libgpiod v2 bindings); edges
    arrive on the line request's file descriptor."""

    def __init__(self, chip: str, line: int, active_high: bool = True):
        import gpiod  # optional: only on boxes that have it (pip install 'xiaoqu[gpio]')
        from gpiod.line import Bias, Edge, Value
        super().__init__()
        self.active_value = Value.ACTIVE if active_high else Value.INACTIVE
        self.line = line
        self.request = gpiod.request_lines(chip, consumer="xiaoqu-bridge", config={
            line: gpiod.LineSettings(edge_detection=Edge.BOTH, bias=Bias.PULL_UP)})
        self.active = self.request.get_value(line) == self.active_value
        asyncio.get_running_loop().add_reader(self.request.fd, self._edges)

    def _edges(self) -> None:
        self.request.read_edge_events()
        self._changed(self.request.get_value(self.line) == self.active_value)


def contact_from_config(table: dict, default: Contact | None = None) -> Contact:
    kind = table.get("kind", "simulated")
    if kind == "gpio":
        return GpioContact(table["chip"], table["line"], table.get("active_high", True))
    if kind == "simulated":
        return default if default is not None else SimulatedContact()
    raise ValueError(f"unknown input kind {kind!r}")


async def from_config(config: dict):
    """(scanner, relay, door, inputs) from the [scanner], [relay], [door] and [inputs.*]
    tables of bridge.toml; `inputs` maps each configured input's name to its contact."""
    s, r, d = config.get("scanner", {}), config.get("relay", {}), config.get("door", {})
    scanner = {
        "stdin": stdin_scanner,
        "serial": lambda: serial_scanner(s["device"], s.get("baud", 9600)),
        "tcp": lambda: tcp_scanner(s["host"], s["port"]),
    }.get(s.get("kind", "stdin"))
    if scanner is None:
        raise ValueError(f"unknown scanner kind {s.get('kind')!r}")
    kind = r.get("kind", "simulated")
    if kind == "gpiod":
        relay = GpiodRelay(r["chip"], r["line"], r.get("active_low", False))
    elif kind == "serial":
        relay = SerialRelay(r["device"], bytes.fromhex(r["on"]), bytes.fromhex(r["off"]),
                            r.get("baud", 9600))
    else:
        relay = SimulatedRelay()
    door = contact_from_config({"active_high": d.get("open_is_high", True), **d},
                               SimulatedDoor(relay, auto=d.get("auto", True)))
    inputs = {name: contact_from_config(table) for name, table in config.get("inputs", {}).items()}
    return await scanner(), relay, door, inputs

"""Bridge drivers against real devices of their kind: a pseudo-terminal stands in for
the serial port (same termios calls, same byte stream), a TCP server for a network reader."""

import asyncio
import os

import pytest

from gate_bridge.drivers import SerialRelay, serial_scanner, tcp_scanner

pytestmark = pytest.mark.asyncio
TIMEOUT = 30  # seconds: the deadline of a wait for an event, only a hung test meets it


@pytest.fixture
def serial_pair():
    """(our end, the device path the driver opens) of a pseudo-terminal."""
    ours, theirs = os.openpty()
    path = os.ttyname(theirs)
    yield ours, path
    os.close(ours)
    os.close(theirs)


def read_exactly(fd: int, size: int) -> bytes:
    """A pseudo-terminal hands over what was written in as many reads as it likes."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        assert chunk, "the device closed"
        data += chunk
    return data


async def test_serial_scanner_reads_one_code_per_line(serial_pair):
    ours, path = serial_pair
    scanner = await serial_scanner(path, 9600)
    os.write(ours, b"\r\nQR-CODE-1\r\n\r\nQR-CODE-2\n")  # readers send CR LF and blank lines
    assert await asyncio.wait_for(scanner.read(), TIMEOUT) == "QR-CODE-1"
    assert await asyncio.wait_for(scanner.read(), TIMEOUT) == "QR-CODE-2"
    scanner.close()


async def test_serial_relay_board_gets_its_on_and_off_bytes(serial_pair):
    ours, path = serial_pair
    relay = SerialRelay(path, on=bytes.fromhex("A00101A2"), off=bytes.fromhex("A00100A1"))
    heard = []
    relay.listeners.append(heard.append)
    await relay.hold(True)
    await relay.hold(False)
    assert read_exactly(ours, 8) == bytes.fromhex("A00101A2A00100A1")
    assert heard == [True, False]
    relay.port.close()


async def test_tcp_scanner_reads_codes_from_a_network_reader():
    async def reader_device(_, writer):
        writer.write(b"CODE-A\nCODE-B\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(reader_device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        scanner = await tcp_scanner("127.0.0.1", port)
        assert await asyncio.wait_for(scanner.read(), TIMEOUT) == "CODE-A"
        assert await asyncio.wait_for(scanner.read(), TIMEOUT) == "CODE-B"
        with pytest.raises(EOFError):
            await asyncio.wait_for(scanner.read(), TIMEOUT)
        scanner.close()


async def test_bridge_toml_inputs_become_contacts_and_unknown_ones_are_refused(tmp_path):
    from gate_bridge import drivers
    from gate_bridge.bridge import Bridge, BridgeConfig
    from gate_bridge.store import Store
    document = {"scanner": {"kind": "tcp", "host": "127.0.0.1", "port": 9},
                "inputs": {"exit": {}, "fire": {"kind": "simulated"}}}
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    document["scanner"]["port"] = server.sockets[0].getsockname()[1]
    async with server:
        scanner, relay, door, inputs = await drivers.from_config(document)
        scanner.close()
    assert set(inputs) == {"exit", "fire"} and all(isinstance(c, drivers.Contact)
                                                    for c in inputs.values())
    config = BridgeConfig(bridge_id="br-x", secret="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                          tls=False, allow_plain=True)
    store = Store(str(tmp_path / "b.sqlite"))
    try:
        Bridge(config, store, scanner, relay, door, inputs)
        with pytest.raises(ValueError, match="doorbell"):
            Bridge(config, store, scanner, relay, door, {"doorbell": drivers.SimulatedContact()})
        with pytest.raises(ValueError, match="kind"):
            drivers.contact_from_config({"kind": "carrier-pigeon"})
    finally:
        store.close()

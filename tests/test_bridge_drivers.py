"""Bridge drivers against real devices of their kind: a pseudo-terminal stands in for
the serial port (same termios calls, same byte stream), a TCP server for a network reader."""

import asyncio
import os

import pytest

from gate_bridge.drivers import SerialRelay, serial_scanner, tcp_scanner

pytestmark = pytest.mark.asyncio
TIMEOUT = 5


@pytest.fixture
def serial_pair():
    """(our end, the device path the driver opens) of a pseudo-terminal."""
    ours, theirs = os.openpty()
    path = os.ttyname(theirs)
    yield ours, path
    os.close(ours)
    os.close(theirs)


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
    assert os.read(ours, 8) == bytes.fromhex("A00101A2A00100A1")
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

"""Frames on the gate socket: a 4-byte big-endian payload length, then the payload.

The payload is one message (a map with an `op`), encoded as JSON or MessagePack.
The codec is told by the payload's first byte: `{` (0x7B) is JSON (UTF-8); a
MessagePack map starts with 0x80-0x8F, 0xDE or 0xDF. So both sides can always
read either codec, and each answers in the codec its peer chose in `hello`.

Imports only the standard library and msgpack: the bridge uses this module too.
"""

import asyncio
import json
import struct

import msgpack

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024  # bytes of payload; a config push with a long revocation list fits
CODECS = ("msgpack", "json")


class FrameTooLarge(Exception):
    """The peer announced a payload above the limit: the stream cannot be trusted any more."""


class BadPayload(Exception):
    """One frame's payload did not decode to a map; the framing itself is still intact."""


def encode(message: dict, codec: str = "msgpack") -> bytes:
    if codec == "json":
        payload = json.dumps(message, separators=(",", ":"), default=_json_bytes).encode()
    else:
        payload = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(payload)) + payload


def _json_bytes(value):
    # JSON peers get bytes (nonces, proofs) as lowercase hex strings.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode_payload(payload: bytes) -> tuple[dict, str]:
    """The message and the codec it came in. Raises BadPayload."""
    try:
        if payload[:1] == b"{":
            message, codec = json.loads(payload), "json"
        else:
            message, codec = msgpack.unpackb(payload, raw=False, strict_map_key=False), "msgpack"
    except (ValueError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise BadPayload(f"undecodable payload: {type(exc).__name__}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise BadPayload("payload must be a map with a string 'op'")
    return message, codec


def split(buffer: bytes, max_frame: int = MAX_FRAME) -> tuple[list[bytes], bytes]:
    """(complete payloads, the bytes of an unfinished frame) of bytes received so far.

    Raises FrameTooLarge as soon as a header announces more than `max_frame`.
    """
    payloads, at = [], 0
    while len(buffer) - at >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer, at)
        if size > max_frame:
            raise FrameTooLarge(f"frame of {size} bytes exceeds {max_frame}")
        end = at + HEADER.size + size
        if len(buffer) < end:
            break
        payloads.append(bytes(buffer[at + HEADER.size:end]))
        at = end
    return payloads, bytes(buffer[at:])


async def read_frame(reader, max_frame: int = MAX_FRAME) -> tuple[dict, str]:
    """Read one message from an asyncio StreamReader (the bridge side).

    Raises asyncio.IncompleteReadError at end of stream, FrameTooLarge, BadPayload.
    """
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds {max_frame}")
    return decode_payload(await reader.readexactly(size))


# The deadline of a wait for a state (tests, simulator): it only ends a wait that hangs, and a
# loaded machine is slow, not stuck.
WAIT = 30.0


class Changes:
    """Lets a coroutine wait for a condition that plain callbacks make true.

    Both the hub and the bridge call `changed()` after each frame they handle;
    tests and the simulator `await wait(predicate)` instead of sleeping.
    """

    def __init__(self):
        self._event = None

    def changed(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, predicate, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                if self._event is None:
                    self._event = asyncio.Event()
                await self._event.wait()

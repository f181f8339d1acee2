"""Printable sheets of tags — patrol checkpoints, equipment items: the one way both are made."""

from handlers.passes import image_url
from models.check_ins import tag_payload


async def tag_sheet(prefix: str, entries: list[dict]) -> list[dict]:
    """Each tag to print ({id, code, name, place_path}) with `payload`, the text its QR code
    carries (`<prefix>:<code>`), and `qr`, that code as an SVG data URL."""
    tags = []
    for entry in entries:
        payload = tag_payload(prefix, entry["code"])
        tags.append({**entry, "payload": payload, "qr": await image_url(payload, "svg_data_url")})
    return tags

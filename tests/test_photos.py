"""Ticket photos over HTTP: sniffing, limits, EXIF rotation and stripping, thumbnails, access."""

import io
import struct
import uuid
import zlib

import pytest
import pytest_asyncio
from PIL import ExifTags, Image, PngImagePlugin

from models.photos import MAX_BYTES
from tests.tickets_support import clock, t, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def ticket(t):
    t.id = (await t.report()).body["id"]
    t.photos = f"{t.base}/{t.id}/photos"
    return t


def multipart(*files: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="p{i}.jpg"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for i, data in enumerate(files))
    return parts + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


async def upload(t, who, *files):
    body, headers = multipart(*files)
    return await t.http.call("POST", t.photos, raw=body, headers=headers, token=t.w.tokens[who])


async def download(t, who, path):
    """Photos are bytes, not JSON: fetched without the JSON client."""
    return await t.http.http.fetch(t.http.base_url + path, raise_error=False,
                                   headers={"Authorization": f"Bearer {t.w.tokens[who]}"})


def phone_photo(fmt: str = "JPEG") -> bytes:
    """40x20 pixels, stored sideways (EXIF orientation 6) with a GPS position."""
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (30.0, 15.0, 0.0)
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


def image_bytes(fmt: str, size=(64, 48), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA" if fmt != "JPEG" else "RGB", size, "blue").save(out, fmt, **options)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but has almost no data: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")




async def test_phone_photo_is_turned_upright_stripped_and_thumbnailed(ticket):
    source = Image.open(io.BytesIO(phone_photo())).getexif()
    assert source[ExifTags.Base.Orientation] == 6 and source.get_ifd(ExifTags.IFD.GPSInfo)
    reply = await upload(ticket, "ann", phone_photo())
    assert reply.status == 201, reply.body
    [photo] = reply.body["photos"]
    assert (photo["content_type"], photo["stage"]) == ("image/jpeg", "report")

    full = await download(ticket, "ann", f"{ticket.photos}/{photo['id']}")
    assert full.headers["Content-Type"] == "image/jpeg"
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    stored = Image.open(io.BytesIO(full.body))
    assert stored.size == (20, 40)  # upright
    assert dict(stored.getexif()) == {} and "xmp" not in stored.info


async def test_thumbnail_and_who_may_see_photos(ticket):
    big = image_bytes("JPEG", size=(1200, 900))
    photo = (await upload(ticket, "ann", big)).body["photos"][0]
    url = f"{ticket.photos}/{photo['id']}"
    thumb = await download(ticket, "maintenance", url + "?thumbnail=true")
    assert thumb.code == 200
    assert Image.open(io.BytesIO(thumb.body)).size == (320, 240)
    assert (await download(ticket, "bob", url)).code == 404
    assert (await download(ticket, "ann", f"{ticket.photos}/{'0' * 24}")).code == 404


async def test_png_webp_and_heic_are_accepted(ticket):
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "30.25N 120.17E")
    heic = phone_photo("HEIF")
    assert heic[4:12] == b"ftypheic"  # what an iPhone sends
    reply = await upload(ticket, "ann", image_bytes("PNG", pnginfo=info), image_bytes("WEBP"), heic)
    assert reply.status == 201, reply.body
    png, webp, from_heic = reply.body["photos"]
    # HEIC is stored as JPEG, which every browser shows.
    assert [p["content_type"] for p in (png, webp, from_heic)] == [
        "image/png", "image/webp", "image/jpeg"]
    body = (await download(ticket, "ann", f"{ticket.photos}/{png['id']}")).body
    assert "Location" not in Image.open(io.BytesIO(body)).info
    stored = await download(ticket, "ann", f"{ticket.photos}/{from_heic['id']}")
    image = Image.open(io.BytesIO(stored.body))
    assert image.format == "JPEG" and image.size == (20, 40)  # upright
    assert dict(image.getexif()) == {}  # no GPS position kept
    assert from_heic["thumbnail_id"] is not None


@pytest.mark.parametrize("data, problem", [
    (b"GIF89a" + b"\0" * 100, "不是 JPEG、PNG、WebP 或 HEIC 图片"),
    (b"hello, this is text", "不是 JPEG、PNG、WebP 或 HEIC 图片"),
    (b"\xff\xd8\xff" + b"\x13" * 500, "图片数据已损坏"),
    (png_header_only(8000, 6000), "超过 40 百万像素"),
    (png_header_only(20000, 20000), "超过 40 百万像素"),  # Pillow's bomb check
    (b"\xff\xd8\xff" + b"\0" * MAX_BYTES, "大于 10 MB"),
])
async def test_bad_uploads_are_refused_and_nothing_is_kept(app, ticket, data, problem):
    reply = await upload(ticket, "ann", image_bytes("PNG"), data)
    assert reply.status == 422
    assert reply.error["fields"] == {"photo": problem}
    assert await app.db["photos.files"].count_documents({}) == 0
    assert (await ticket.get("ann", ticket.id)).body["photos"] == []


async def test_at_most_nine_report_photos(app, ticket):
    small = image_bytes("PNG", size=(8, 8))
    assert (await upload(ticket, "ann", *[small] * 8)).status == 201
    reply = await upload(ticket, "customer_service", small, small)
    assert reply.status == 422 and reply.error["code"] == "too_many_photos"
    assert (await upload(ticket, "customer_service", small)).status == 201
    assert await app.db["photos.files"].count_documents({}) == 18  # 9 photos and 9 thumbnails


async def test_worker_photos_are_their_own_stage_and_only_while_working(ticket):
    small = image_bytes("PNG", size=(8, 8))
    assert (await upload(ticket, "maintenance", small)).status == 403  # not theirs yet
    await ticket.through(ticket.id, "assign")
    assert (await upload(ticket, "maintenance", small)).status == 409  # not accepted yet
    await ticket.through(ticket.id, "accept", "check_in")
    reply = await upload(ticket, "maintenance", small)
    assert reply.status == 201 and reply.body["photos"][0]["stage"] == "work"
    assert (await upload(ticket, "bob", small)).status == 404
    body, headers = multipart()
    empty = await ticket.http.call("POST", ticket.photos, raw=body, headers=headers,
                                   token=ticket.w.tokens["ann"])
    assert empty.status == 400 and empty.error["fields"] == {"photo": "必填"}


async def test_signed_links_show_a_photo_without_a_bearer_header_until_they_expire(
        app, ticket, clock):
    photo = (await upload(ticket, "ann", phone_photo())).body["photos"][0]
    seen = (await ticket.get("customer_service", ticket.id)).body["photos"][0]
    fetch = ticket.http.http.fetch
    for link in (seen["url"], seen["thumbnail_url"]):
        assert link.startswith("/api/photos/")
        shown = await fetch(ticket.http.base_url + link, raise_error=False)  # no Authorization
        assert shown.code == 200 and shown.headers["Content-Type"] == "image/jpeg"
        assert shown.headers["Cache-Control"].startswith("private, max-age=")
    assert seen["url"].startswith(f"/api/photos/{photo['id']}?")
    forged = seen["url"].replace(photo["id"], photo["thumbnail_id"])
    assert (await fetch(ticket.http.base_url + forged, raise_error=False)).code == 403
    clock.advance(3600)
    expired = await fetch(ticket.http.base_url + seen["url"], raise_error=False)
    assert expired.code == 403 and b"photo_link_expired" in expired.body

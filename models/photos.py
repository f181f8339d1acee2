"""Ticket photos: checked, cleaned, thumbnailed, stored behind a small interface.

Uploads are identified by their magic bytes (the file name and the client's
content type are not trusted). JPEG, PNG and WebP are decoded by Pillow with a
byte and a pixel limit checked before any pixel is decoded (decompression bombs
are refused), turned upright by their EXIF orientation, re-encoded without any
metadata (so no GPS position leaves the phone) and given a thumbnail. HEIC,
the iPhone default, is decoded through the pillow-heif plugin and stored as
JPEG, which every browser shows. The Pillow work runs in a thread, off the
event loop.
"""

import asyncio
import hashlib
import hmac
import io
import math
from dataclasses import dataclass

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from models.errors import Forbidden, NotFound, Unprocessable
from models.messages import Text

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40 MP phone photo; below Pillow's own bomb limit
THUMB_SIZE = (320, 320)
JPEG_QUALITY = 85
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# upload type -> (Pillow decoder, stored type, Pillow encoder)
FORMATS = {"image/jpeg": ("JPEG", "image/jpeg", "JPEG"), "image/png": ("PNG", "image/png", "PNG"),
           "image/webp": ("WEBP", "image/webp", "WEBP"), "image/heic": ("HEIF", "image/jpeg", "JPEG")}

register_heif_opener()
LINK_SECONDS = 600  # a signed photo link works at least this long…
LINK_STEP = 300  # …and expiries are rounded up to this, so a page re-rendering keeps its URLs


class PhotoLinks:
    """Short-lived signed photo URLs, for an <img> that cannot send a bearer header.

    A link is issued only inside an answer to someone who may see the ticket, and names one
    stored file; the signature (HMAC of file id and expiry) is checked here and nowhere else.
    """

    PATH = "/api/photos/"

    def __init__(self, secret: str, clock):
        self.key = hmac.new(secret.encode(), b"photo-links", hashlib.sha256).digest()
        self.clock = clock

    def _signature(self, file_id: str, expires: int) -> str:
        return hmac.new(self.key, f"{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def url(self, file_id: str) -> str:
        expires = math.ceil((self.clock.time() + LINK_SECONDS) / LINK_STEP) * LINK_STEP
        return f"{self.PATH}{file_id}?expires={expires}&sig={self._signature(file_id, expires)}"

    def linked(self, photos: list[dict]) -> list[dict]:
        """Stored photo entries with signed links to each and its thumbnail, for an <img>."""
        return [{**p, "url": self.url(p["id"]), "thumbnail_url": self.url(p["thumbnail_id"] or p["id"])}
                for p in photos]

    def check(self, file_id: str, expires: int, signature: str) -> float:
        """Seconds the link has left; Forbidden when it is forged or expired."""
        if not hmac.compare_digest(signature.encode(), self._signature(file_id, expires).encode()):
            raise Forbidden("this photo link is not valid", code="bad_photo_link")
        left = expires - self.clock.time()
        if left <= 0:
            raise Forbidden("this photo link has expired; reload the ticket", code="photo_link_expired")
        return left


def sniff(data: bytes) -> str | None:
    """The image type from the first bytes, or None when it is not one we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "image/heic"
    return None


@dataclass
class Processed:
    content_type: str
    data: bytes
    thumbnail: bytes | None
    width: int | None
    height: int | None


def _refuse(reason: str) -> Unprocessable:
    return Unprocessable(Text("photo refused: {reason}", reason=reason), code="bad_photo",
                         fields={"photo": reason})


def process(data: bytes) -> Processed:
    """Check and clean one upload (blocking: call it in a thread)."""
    if len(data) > MAX_BYTES:
        raise _refuse(Text("larger than {size} MB", size=MAX_BYTES // (1024 * 1024)))
    content_type = sniff(data)
    if content_type is None:
        raise _refuse(Text("not a JPEG, PNG, WebP or HEIC image"))
    decoder, stored_type, encoder = FORMATS[content_type]
    try:
        # open() reads only the header: the size is known before any decoding.
        with Image.open(io.BytesIO(data), formats=[decoder]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _refuse(Text("more than {count} million pixels", count=MAX_PIXELS // 1_000_000))
            image.load()
            upright = ImageOps.exif_transpose(image)
            return Processed(stored_type, _encode(upright, encoder), _thumbnail(upright),
                             *upright.size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse(Text("more than {count} million pixels", count=MAX_PIXELS // 1_000_000)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _refuse(Text("the image data is damaged")) from None


def _encode(image: Image.Image, fmt: str) -> bytes:
    """Re-encode without metadata: no EXIF, XMP or text chunks are passed to the encoder."""
    out = io.BytesIO()
    if fmt == "JPEG":
        image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _thumbnail(image: Image.Image) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail(THUMB_SIZE)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=80)
    return out.getvalue()


async def process_upload(data: bytes) -> Processed:
    return await asyncio.to_thread(process, data)


async def store_uploads(store, uploads: list[bytes], meta: dict, **entry) -> tuple[list[str], list[dict]]:
    """Check every upload, then keep each with its thumbnail: (the stored file ids, one
    entry per photo — id, thumbnail_id, content_type, width, height and `entry`'s fields)."""
    processed = [await process_upload(data) for data in uploads]  # all checked before any is kept
    stored, entries = [], []
    for item in processed:
        full = await store.put(item.data, item.content_type, meta)
        stored.append(full)
        thumb = None
        if item.thumbnail is not None:
            thumb = await store.put(item.thumbnail, "image/jpeg", {**meta, "thumbnail_of": full})
            stored.append(thumb)
        entries.append({"id": full, "thumbnail_id": thumb, "content_type": item.content_type,
                        **entry, "width": item.width, "height": item.height})
    return stored, entries


class GridFSPhotoStore:
    """Photo bytes in MongoDB GridFS. Anything with put/get/delete can replace it."""

    def __init__(self, db, bucket: str = "photos"):
        self.bucket = AsyncGridFSBucket(db, bucket_name=bucket)

    async def put(self, data: bytes, content_type: str, metadata: dict) -> str:
        file_id = await self.bucket.upload_from_stream(
            "photo", data, metadata={**metadata, "content_type": content_type})
        return str(file_id)

    async def get(self, file_id: str) -> tuple[bytes, str]:
        try:
            stream = await self.bucket.open_download_stream(ObjectId(file_id))
        except (NoFile, InvalidId):
            raise NotFound("photo not found") from None
        return await stream.read(), stream.metadata["content_type"]

    async def delete(self, file_id: str) -> None:
        try:
            await self.bucket.delete(ObjectId(file_id))
        except NoFile:
            pass

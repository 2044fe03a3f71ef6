"""Files kept in the conversation store's key-value space, named by unguessable ids.

A file an agent attaches in Slack, or one a web chat customer sends, is kept here so that a
channel can deliver it later (and again, when a delivery is retried) without keeping bytes in
the outbox. Files are small (``MAX_FILE_BYTES``); each is stored base64-encoded.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import orjson

from bot import constants
from bot.errors import PermanentDeliveryError
from bot.events import Attachment
from bot.ports import KeyValueStore

__all__ = ["FileBlob", "StoredFiles"]

_NAMESPACE = "file"


@dataclass(frozen=True)
class FileBlob:
    """A file's bytes on their way between a customer's channel and the agents."""

    name: str
    mime_type: str
    data: bytes


class StoredFiles:
    """Puts and gets files by id."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store

    async def put(self, blob: FileBlob, *, owner: str) -> Attachment:
        """Keep ``blob`` for conversation ``owner``; the attachment that names it."""
        if len(blob.data) > constants.MAX_FILE_BYTES:
            raise PermanentDeliveryError(
                f"{blob.name} is larger than {constants.MAX_FILE_BYTES // 1_000_000} MB"
            )
        file_id = secrets.token_urlsafe(24)
        record = {
            "owner": owner,
            "name": blob.name,
            "mime_type": blob.mime_type,
            "data": base64.b64encode(blob.data).decode(),
        }
        await self._store.put_value(_NAMESPACE, file_id, orjson.dumps(record).decode())
        kind = "image" if blob.mime_type.startswith("image/") else "document"
        return Attachment(kind=kind, file_id=file_id, name=blob.name, mime_type=blob.mime_type)

    async def get(self, attachment: Attachment, *, owner: str | None = None) -> FileBlob:
        """The attachment's file (only if it belongs to ``owner``, when given);
        ``PermanentDeliveryError`` when it is not, or no longer, kept."""
        raw = await self._store.get_value(_NAMESPACE, attachment.file_id or "")
        record = orjson.loads(raw) if raw is not None else None
        if record is None or (owner is not None and record.get("owner") != owner):
            raise PermanentDeliveryError(f"the file {attachment.name!r} is not kept")
        return FileBlob(
            name=str(record["name"]),
            mime_type=str(record["mime_type"]),
            data=base64.b64decode(record["data"]),
        )

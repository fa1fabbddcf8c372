"""The embedded runner's broker: kombu's filesystem transport with whole-file messages.

kombu's own `_put` opens the message's final name and then writes into it, while a consumer
polling the folder takes every `*.msg` it sees: it could take a file still empty, fail on its
JSON and stop the worker (seen once in CI). Here a message is written under a name the consumer
ignores and renamed into place when complete (a rename within one folder is atomic). Registered
in worker/celery_app.py under kombu's own alias, so `filesystem://` means this transport.
"""
from __future__ import annotations

import os
import uuid
from contextlib import suppress
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport"]


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put `payload` onto `queue`: the same file name as kombu's, written aside first."""
        data = str_to_bytes(dumps(payload))
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        part = final + ".part"  # "<queue>.msg.part" is not "<queue>.msg": consumers skip it
        try:
            with open(part, "wb") as f:
                f.write(data)
            os.replace(part, final)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(part)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

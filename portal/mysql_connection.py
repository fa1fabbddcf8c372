"""A PyMySQL connection that spares the round trips a web request does not need.

Every request ends its session with a rollback, and SQLAlchemy's pool then rolls back once more
as the connection comes home (the session's close leaves no transaction on the Connection, so
the pool cannot tell it was just reset): a second round trip per request that can change
nothing. A transaction opens only with a statement, so after a successful COMMIT or ROLLBACK
and no statement since, the server has nothing to roll back.

The pool's pre-ping (a COM_PING round trip at every checkout) is replaced by closed_by_server(),
which asks the kernel instead: see portal/__init__.py (_fail_fast).
"""
from __future__ import annotations

import select

from pymysql.connections import Connection


class SkipIdleRollback(Connection):
    _idle = False  # True from a successful COMMIT or ROLLBACK until the next statement

    def closed_by_server(self) -> bool:
        """Whether the server has let go of this idle connection (restarted, killed, wait_timeout).

        Between statements the server sends nothing, so any readable byte is its goodbye: the end
        of the stream, or an error packet before it. One poll() of the socket, no round trip; a
        server that stalled without closing is caught by read_timeout, as a ping would be.
        """
        if self._sock is None:
            return True
        poller = select.poll()  # not select(): it cannot watch descriptors past 1023
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0))

    def query(self, sql, unbuffered: bool = False):
        self._idle = False
        return super().query(sql, unbuffered)

    def begin(self) -> None:
        self._idle = False
        super().begin()

    def commit(self) -> None:
        super().commit()
        self._idle = True

    def rollback(self) -> None:
        if not self._idle and not self.autocommit_mode:  # autocommit: no transaction to end
            super().rollback()
            self._idle = True

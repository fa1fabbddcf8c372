"""A PyMySQL connection that does not send a ROLLBACK when nothing was sent since the last one.

Every request ends its session with a rollback, and SQLAlchemy's pool then rolls back once more
as the connection comes home (the session's close leaves no transaction on the Connection, so
the pool cannot tell it was just reset): a second round trip per request that can change
nothing. A transaction opens only with a statement, so after a successful COMMIT or ROLLBACK
and no statement since, the server has nothing to roll back.
"""
from __future__ import annotations

from pymysql.connections import Connection


class SkipIdleRollback(Connection):
    _idle = False  # True from a successful COMMIT or ROLLBACK until the next statement

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
        if not self._idle:
            super().rollback()
            self._idle = True

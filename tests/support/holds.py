"""Hold the database's write lock from the test, as another connection would.

SQLite: a second connection's BEGIN IMMEDIATE (every writer then waits its busy
timeout and gets "database is locked"). PostgreSQL: an EXCLUSIVE lock on the
feedback table (writers wait, readers do not). Taken from any thread (an SMTP
handler's); released by the test, or by itself after `release_after` seconds.
"""

import sqlite3
import threading

from django.db import connections


class DatabaseHold:
    def __init__(self) -> None:
        self._settings = connections["default"].settings_dict
        self._connection = None
        self._lock = threading.Lock()
        self.taken = threading.Event()
        self.released = threading.Event()

    @property
    def vendor(self) -> str:
        return connections["default"].vendor

    def take(self, *, release_after: float | None = None) -> None:
        with self._lock:
            if self._connection is not None or self.released.is_set():
                return  # once per test
            if self.vendor == "sqlite":
                connection = sqlite3.connect(
                    self._settings["NAME"], isolation_level=None, check_same_thread=False
                )
                connection.execute("BEGIN IMMEDIATE")
            else:
                import psycopg

                connection = psycopg.connect(
                    host=self._settings["HOST"],
                    port=self._settings["PORT"],
                    user=self._settings["USER"],
                    dbname=self._settings["NAME"],
                )
                connection.execute("LOCK TABLE feedback_feedback IN EXCLUSIVE MODE")
            self._connection = connection
            self.taken.set()
        if release_after is not None:
            threading.Timer(release_after, self.release).start()

    def release(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            self.released.set()
        if connection is not None:
            connection.rollback()
            connection.close()

    def __enter__(self) -> "DatabaseHold":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

"""The bench's old import path: the private PostgreSQL lives in ``devtools.processes``."""

from devtools.processes import PostgresServer, PostgresServerError, find_postgres_bin_dir

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bin_dir"]

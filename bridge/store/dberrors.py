"""A database error in the database's own words, on one line, for the logs and the refusals."""

from sqlalchemy.exc import DBAPIError

SHOWN_CHARS = 200  # what a log line quotes of the error


def brief(error: DBAPIError) -> str:
    """The driver's message of ``error`` (SQLAlchemy's wrapper left out), its whitespace folded, cut
    at SHOWN_CHARS."""
    return " ".join(str(error.orig or error).split())[:SHOWN_CHARS]

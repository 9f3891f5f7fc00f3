"""The role of each user of a users directory, read again whenever its users.toml changes: the bridge checks
each command against the role's commands (broker.roles) besides the broker's ACL.
(The bridge's own user may publish on every ``spc/`` topic, to clear retained requests, yet its role
sends no command.)"""

import logging
from pathlib import Path

from broker.users import UserDirectory, UsersError

log = logging.getLogger(__name__)


class UserRoles:
    """The roles of the users of a users directory (``spc-bridge user``)."""

    def __init__(self, path: Path) -> None:
        self.directory = UserDirectory(path)
        self._stamp: tuple[int, int] | None = None
        self._roles: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        """Read users.toml again if it changed; keep the users known so far if it cannot be read."""
        try:
            status = self.directory.users_file.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            if stamp == self._stamp:
                return
            users = self.directory.load()
        except (OSError, UsersError) as error:
            log.warning("the users of %s cannot be read, the bridge keeps those it knew: %s",
                        self.directory.path, error)
            return
        self._stamp = stamp
        self._roles = {user.name: user.role for user in users}

    def role(self, user: str) -> str | None:
        """``user``'s role; None for a user the directory does not have."""
        self._load()
        return self._roles.get(user)

"""Who may send which command, as the bridge checks it besides the broker's ACL: the commands of each
role in broker.roles, for the users of a users directory, read again whenever its users.toml changes.
(The bridge's own user may publish on every ``spc/`` topic, to clear retained requests, yet its role
sends no command.)"""

import logging
from pathlib import Path

from broker.roles import ROLES
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

    def permits(self, user: str, command: str) -> bool:
        """Whether ``user``'s role lets it send ``command``."""
        self._load()
        role = self._roles.get(user)
        return role is not None and command in ROLES[role].commands

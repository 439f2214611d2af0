"""A private Postfix instance on 127.0.0.1, for tests against a real mail server.

Debian's `postfix` package, run with its own configuration directory, queue
and maildir in a temporary directory (`postfix -c DIR start-fg`): nothing of
the system's Postfix (if any) is used or touched. Postfix's master must run
as root. Mail for the test domains is delivered by Postfix's `virtual`
agent into one maildir (`delivered()`); `nobody@<domain>` is unknown (550),
and `refuse()` adds check_recipient_access rules (a 450, say) that `lift()`
removes again, both applied with `postfix reload`.
"""

import os
import shutil
import subprocess
import tempfile
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from devtools.processes import ThrowawayServer

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
DOMAINS = ("example.com", "xn--strae-oqa.de", "xn--fsqu00a.xn--fiqs8s")  # 例子.中国
NOBODY_UID = 65534


def missing_reason() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not (os.path.exists(POSTFIX) and os.path.exists(POSTCONF)):
        return "postfix is missing (apt-get install postfix)"
    if os.geteuid() != 0:
        return "Postfix's master runs as root only"
    return None


class Postfix(ThrowawayServer):
    """``postfix start-fg``: ready once its port accepts."""

    name = "postfix"

    def __init__(self) -> None:
        # Not pytest's tmp_path: Postfix's unprivileged daemons (user postfix,
        # and nobody for delivery) must be able to enter it.
        self.dir = self.root = Path(tempfile.mkdtemp(prefix="postfix-test-"))
        self.root.chmod(0o755)
        self.conf = self.root / "conf"
        self.maildir = self.root / "mail" / "inbox"
        self.access = self.conf / "recipient_access"
        super().__init__(lambda host, port: [POSTFIX, "-c", str(self.conf), "start-fg"],
                         log_path=self.root / "postfix.log")  # fmt: skip
        self._configure()

    # -- configuration ---------------------------------------------------------
    def _postconf(self, *args: str) -> None:
        subprocess.run([POSTCONF, "-c", str(self.conf), *args], check=True, capture_output=True)

    def _configure(self) -> None:
        for name in ("conf", "queue", "data", "mail"):
            (self.root / name).mkdir()
        shutil.chown(self.root / "data", user="postfix")
        os.chown(self.root / "mail", NOBODY_UID, NOBODY_UID)
        shutil.copy("/etc/postfix/master.cf", self.conf / "master.cf")
        self.access.write_text("")
        # Every address of the test domains goes to one maildir, but nobody@.
        (self.conf / "mailboxes").write_text("!/^nobody@/ inbox/\n")
        root = self.root
        (self.conf / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    f"queue_directory = {root / 'queue'}",
                    f"data_directory = {root / 'data'}",
                    "mail_owner = postfix",
                    "setgid_group = postdrop",
                    "myhostname = mx.example.test",
                    "mydomain = example.test",
                    "mydestination =",
                    "local_recipient_maps =",
                    "alias_maps =",
                    "alias_database =",
                    "inet_interfaces = 127.0.0.1",
                    "inet_protocols = ipv4",
                    "mynetworks = 127.0.0.0/8",
                    "smtputf8_enable = yes",
                    "biff = no",
                    "maillog_file = /dev/stdout",
                    f"virtual_mailbox_domains = {', '.join(DOMAINS)}",
                    f"virtual_mailbox_base = {root / 'mail'}",
                    f"virtual_mailbox_maps = regexp:{self.conf / 'mailboxes'}",
                    f"virtual_uid_maps = static:{NOBODY_UID}",
                    f"virtual_gid_maps = static:{NOBODY_UID}",
                    "smtpd_recipient_restrictions ="
                    f" check_recipient_access texthash:{self.access},"
                    " reject_unauth_destination",  # no relaying: other domains get a 554
                    "",
                ]
            )
        )
        # No chroot (the queue has no copy of /etc), no smtpd on port 25: ours on a free port.
        self._postconf("-F", "*/*/chroot = n")
        self._postconf("-M#", "smtp/inet")
        listen = f"127.0.0.1:{self.port}"
        self._postconf("-Me", f"{listen}/inet={listen} inet n - n - - smtpd")

    def stop(self, timeout: float = 30.0) -> None:
        """Postfix's master leaves our session (setsid): ``postfix stop`` reaches it."""
        if self.running:
            subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True)
        super().stop(timeout)

    def reload(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "reload"], check=True, capture_output=True)

    # -- refusals ----------------------------------------------------------------
    def refuse(self, address: str, reply: str) -> None:
        """Answer ``reply`` (e.g. "450 4.2.0 Mailbox busy") at RCPT TO for ``address``."""
        with self.access.open("a") as rules:
            rules.write(f"{address} {reply}\n")
        self.reload()

    def lift(self) -> None:
        self.access.write_text("")
        self.reload()

    # -- what it delivered ------------------------------------------------------------
    def delivered(self) -> list[tuple[bytes, EmailMessage]]:
        """Every message in the maildir: its bytes as stored, and parsed."""
        new = self.maildir / "new"
        if not new.is_dir():
            return []
        messages = []
        for path in sorted(new.iterdir()):
            raw = path.read_bytes()
            messages.append((raw, message_from_bytes(raw, policy=policy.default)))
        return messages

"""An aiosmtpd handler for the SMTP suite: a Mailbox (each message to a maildir) that refuses, for good (550),
every recipient whose address starts with "bounce" -- as a real server refuses an unknown mailbox."""

from aiosmtpd.handlers import Mailbox


class BounceSome(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("bounce"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

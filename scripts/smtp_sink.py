#!/usr/bin/env python3
"""A recording SMTP server for imix's tests, built on aiosmtpd.

Listens on up to three ports of one host:

  --port            plain SMTP; AUTH (PLAIN, LOGIN) allowed without TLS and required
  --starttls-port   STARTTLS required before AUTH and MAIL
  --tls-port        implicit TLS (SMTPS)

The TLS ports use a throwaway certificate authority and server certificate (for
`localhost` and `127.0.0.1`) generated at start with the `openssl` command into --certdir;
the CA certificate is `<certdir>/ca.pem`, which clients must trust explicitly.

Every accepted message is written to --maildir as `<n>.eml` (the raw bytes) and `<n>.json`
(envelope, headers, decoded MIME parts, whether the session used TLS and who logged in),
each written to a temporary name and renamed, before the server answers 250.

Fixed behaviours the tests rely on:
  - the only credentials accepted are --user / --password (535 otherwise);
  - RCPT TO:<reject@example.com> is refused with 550 5.1.1;
  - MAIL FROM:<rejected-sender@example.com> is refused with 553 5.1.8.

Once every port listens, one line `READY` is printed on stdout (and flushed).
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

REJECTED_RECIPIENT = "reject@example.com"
REJECTED_SENDER = "rejected-sender@example.com"


def generate_certificates(certdir):
    """A CA and a server certificate signed by it, with the openssl command."""
    os.makedirs(certdir, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca_pem = os.path.join(certdir, "ca.key"), os.path.join(certdir, "ca.pem")
    key, csr = os.path.join(certdir, "server.key"), os.path.join(certdir, "server.csr")
    pem, ext = os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_pem, "-days", "2",
        "-subj", "/CN=imix test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w", encoding="ascii") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
        "-out", pem, "-days", "2", "-extfile", ext)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem, key)
    return context


def write_atomically(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Recorder:
    def __init__(self, maildir):
        self.maildir = maildir
        self.counter = itertools.count(1)
        os.makedirs(maildir, exist_ok=True)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.lower() == REJECTED_SENDER:
            return "553 5.1.8 Sender address rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() == REJECTED_RECIPIENT:
            return "550 5.1.1 Recipient address rejected: no such mailbox"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append({
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "content_language": part.get("Content-Language"),
                "body": part.get_content(),
            })
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        transport = server.transport
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object") is not None)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in message.items()],
            "content_type": message.get_content_type(),
            "parts": parts,
            "tls": tls,
            "auth_login": login,
        }
        n = next(self.counter)
        stem = os.path.join(self.maildir, f"{os.getpid()}-{n:06d}")
        write_atomically(stem + ".eml", raw)
        write_atomically(stem + ".json", json.dumps(record, ensure_ascii=False).encode())
        return f"250 2.0.0 OK queued as {os.getpid()}-{n}"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode() and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return check


# Plain SMTP with AUTH is deliberate here (it is what security "none" is tested against).
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
logging.getLogger("mail.log").setLevel(logging.ERROR)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--starttls-port", type=int)
    parser.add_argument("--tls-port", type=int)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--certdir")
    parser.add_argument("--user", default="imix")
    parser.add_argument("--password", default="imix-test-password")
    args = parser.parse_args()

    handler = Recorder(args.maildir)
    check = authenticator(args.user, args.password)
    loop = asyncio.get_running_loop()
    common = dict(authenticator=check, auth_required=True, hostname="localhost",
                  enable_SMTPUTF8=True, decode_data=False)
    servers = [await loop.create_server(
        lambda: SMTP(handler, auth_require_tls=False, **common), args.host, args.port)]
    if args.starttls_port or args.tls_port:
        if not args.certdir:
            parser.error("--certdir is required with --starttls-port or --tls-port")
        context = generate_certificates(args.certdir)
        if args.starttls_port:
            servers.append(await loop.create_server(
                lambda: SMTP(handler, tls_context=context, require_starttls=True,
                             auth_require_tls=True, **common),
                args.host, args.starttls_port))
        if args.tls_port:
            servers.append(await loop.create_server(
                lambda: SMTP(handler, auth_require_tls=False, **common),
                args.host, args.tls_port, ssl=context))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

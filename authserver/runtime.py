"""Everything a process needs to answer requests, built once from the settings.

No Flask here: the CLI, the app factory and the benchmarks all build a Runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vault import KeyRing
from vault.accounts import Vault, lease_for

from . import audit
from .db import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
    make_short_read_session_factory,
    transaction,
)
from .group_commit import GroupCommit
from .keys import SigningKeys
from .mail import Relay, parse_smtp_url
from .notify import Dispatcher
from .passwords import Passwords
from .registry import Registry
from .settings import Settings
from .tokens import TokenMinter

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    keyring: KeyRing
    signing_keys: SigningKeys
    minter: TokenMinter
    passwords: Passwords
    read_session_factory: sessionmaker[Session]
    registry: Registry
    group_commit: GroupCommit  # the inserts of write-only requests (see group_commit.py)
    short_read_factory: sessionmaker[Session]  # one or a few SELECTs, each on its own
    _audit_key: bytes | None = None
    _linker: audit.AuditLinker | None = None
    _dispatcher: Dispatcher | None = None
    _vault: Vault | None = None

    @property
    def audit_key(self) -> bytes:
        if self._audit_key is None:
            with transaction(self.session_factory) as session:
                self._audit_key = audit.load_or_create_audit_key(session, self.keyring)
        return self._audit_key

    @property
    def linker(self) -> audit.AuditLinker:
        if self._linker is None:
            self._linker = audit.AuditLinker(
                self.session_factory, self.audit_key, self.settings.audit_link_interval
            )
        return self._linker

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = Vault(
                factory=self.session_factory,
                read_factory=self.read_session_factory,
                keyring=self.keyring,
                timeout=self.settings.upstream_timeout,
                lease_seconds=lease_for(self.settings.upstream_timeout),
            )
        return self._vault

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            settings = self.settings
            self._dispatcher = Dispatcher(
                self.session_factory,
                self.read_session_factory,
                self.keyring,
                self.audit_key,
                settings.approval_webhook_secret,
                settings.notification_timeout,
                settings.notification_poll_interval,
                relay_of(settings),
            )
        return self._dispatcher


def relay_of(settings: Settings) -> Relay | None:
    """The SMTP relay for approval emails, when one is configured."""
    if not settings.smtp_url:
        return None
    scheme, host, port = parse_smtp_url(settings.smtp_url)
    return Relay(
        scheme,
        host,
        port,
        settings.smtp_username,
        settings.smtp_password,
        settings.approval_email_from,
    )


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    factory = make_session_factory(engine)
    keyring = KeyRing.parse(settings.vault_keys)
    read_factory = make_read_session_factory(engine)
    signing_keys = SigningKeys(read_factory, keyring)
    return Runtime(
        settings=settings,
        engine=engine,
        session_factory=factory,
        keyring=keyring,
        signing_keys=signing_keys,
        minter=TokenMinter(settings, signing_keys),
        passwords=Passwords(settings),
        read_session_factory=read_factory,
        registry=Registry(settings.client_cache_ttl),
        group_commit=GroupCommit(engine),
        short_read_factory=make_short_read_session_factory(engine),
    )

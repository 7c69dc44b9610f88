"""Who may exchange what (RFC 8693 §1.1, §4.1, §4.4).

- The requesting client must be registered for the token-exchange grant and may
  only target audiences its registration allows.
- Delegation (an actor token, or a subject token issued to another client) needs
  the client's delegation policy on, and, when the subject token carries
  `may_act`, that claim must name the requesting client.
- The result's `act` names the requesting client; an already delegated subject
  token's `act` is nested beneath it, so a chain of agents stays visible.
- Scopes are at most subject ∩ client ∩ resource; asking for more is refused.
"""

from __future__ import annotations

from typing import Any

from ...registry import ClientSnapshot, ResourceSnapshot
from .presented import PresentedToken

MAX_CHAIN_DEPTH = 8


class PolicyRefusal(Exception):
    """The exchange is well-formed but not allowed; the message says why."""


def is_delegation(
    client: ClientSnapshot, subject: PresentedToken, actor: PresentedToken | None
) -> bool:
    return actor is not None or subject.client_id != client.client_id


def check_delegation(
    client: ClientSnapshot, subject: PresentedToken, adds_link: bool = True
) -> None:
    """`adds_link`: whether this exchange puts the client on top of the subject's chain
    (not when it exchanges its own delegated token again)."""
    if not client.may_delegate:
        raise PolicyRefusal("This client may not act on behalf of users.")
    # A chain deeper than anyone can audit is refused rather than truncated: every actor
    # between the user and the API must stay visible in the token, introspection and audit.
    grows = adds_link and not _same_actor(client, subject)
    if len(chain_of(subject.act)) + (1 if grows else 0) > MAX_CHAIN_DEPTH:
        raise PolicyRefusal(f"Delegation chains are limited to {MAX_CHAIN_DEPTH} actors.")
    may_act = subject.may_act
    if may_act is not None and (
        not isinstance(may_act, dict) or may_act.get("sub") != client.client_id
    ):
        raise PolicyRefusal("The subject token's may_act does not name this client.")


def check_actor(client: ClientSnapshot, subject: PresentedToken, actor: PresentedToken) -> None:
    """The actor token must be the requesting client's own token (its client-credentials token),
    acting for someone else: an `act` naming the subject itself would record a delegation
    that never happened."""
    if actor.client_id != client.client_id or actor.subject != client.client_id:
        raise PolicyRefusal("The actor_token must be the requesting client's own token.")
    if subject.subject == actor.subject:
        raise PolicyRefusal(
            "The actor_token names the subject itself; exchanging one's own token needs no actor."
        )


def _same_actor(client: ClientSnapshot, subject: PresentedToken) -> bool:
    act = subject.act
    return isinstance(act, dict) and act.get("sub") == client.client_id


def act_claim(client: ClientSnapshot, subject: PresentedToken) -> dict[str, Any]:
    if subject.act and _same_actor(client, subject):
        return subject.act  # the same actor again (its own actor token): one link, not two
    act: dict[str, Any] = {"sub": client.client_id}
    if subject.act:
        act["act"] = subject.act
    return act


def chain_of(act: dict[str, Any] | None) -> list[str]:
    """The actors, current first: act.sub, act.act.sub, ..."""
    chain: list[str] = []
    while isinstance(act, dict) and len(chain) <= MAX_CHAIN_DEPTH:
        chain.append(str(act.get("sub")))
        act = act.get("act")
    return chain


def check_audience(client: ClientSnapshot, resource: ResourceSnapshot) -> None:
    if resource.identifier not in (client.allowed_audiences or []):
        raise PolicyRefusal("This client may not obtain tokens for that audience.")


def granted_scopes(
    requested: list[str],
    subject: PresentedToken,
    client: ClientSnapshot,
    resource: ResourceSnapshot,
) -> tuple[list[str], list[str]]:
    """(scopes to grant, scopes asked for but not available)."""
    available = [s for s in subject.scopes if s in client.allowed_scopes and s in resource.scopes]
    if not requested:
        return available, []
    return [s for s in requested if s in available], [s for s in requested if s not in available]

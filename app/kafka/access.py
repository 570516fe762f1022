"""Apply principals (SCRAM users) and their ACLs to a cluster through the Admin API.

Both operations are idempotent: creating an ACL that exists changes nothing, and users
are only upserted when missing (or when ``rotate`` names them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from app.kafka.principals import Grant
from app.kafka.security import KafkaIdentity

__all__ = ["apply_grants", "ensure_users", "scram_users"]

logger = logging.getLogger(__name__)

_TIMEOUT = 30.0
_ITERATIONS = 8192


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType[grant.resource],
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        f"User:{grant.principal}",
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def apply_grants(admin: AdminClient, grants: Iterable[Grant]) -> int:
    """Create the ACLs of ``grants``; returns how many bindings were sent."""
    bindings = list(dict.fromkeys(_binding(g) for g in grants))
    if not bindings:
        return 0
    for binding, future in admin.create_acls(bindings, request_timeout=_TIMEOUT).items():
        try:
            future.result(timeout=_TIMEOUT)
        except KafkaException as exc:
            raise RuntimeError(f"could not create ACL {binding}: {exc.args[0].str()}") from None
    _wait_visible(admin, bindings)
    logger.info("ACLs: %d bindings applied", len(bindings))
    return len(bindings)


def _wait_visible(admin: AdminClient, bindings: list[AclBinding], timeout_s: float = 60) -> None:
    """Wait until the broker enforces ``bindings``: a created ACL reaches the broker's
    authorizer only when it replays the metadata log (seen to take over 15 s on a busy
    box, with consumers meanwhile refused)."""
    wanted = {str(b) for b in bindings}
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                  AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        found = admin.describe_acls(everything, request_timeout=_TIMEOUT).result(timeout=_TIMEOUT)
        missing = wanted - {str(b) for b in found}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} ACLs not in force after {timeout_s:.0f} s")
        time.sleep(0.2)


def scram_users(admin: AdminClient) -> set[str]:
    """The users that have SCRAM credentials on the cluster."""
    described: Any = admin.describe_user_scram_credentials(request_timeout=_TIMEOUT)
    return set(described.result(timeout=_TIMEOUT))  # one future when no users are named


def ensure_users(
    admin: AdminClient, identities: Mapping[str, KafkaIdentity], rotate: Iterable[str] = ()
) -> list[str]:
    """Give every principal of ``identities`` its SCRAM credential if it has none (or is in
    ``rotate``); returns the names upserted."""
    wanted = set(rotate) | (set(identities) - scram_users(admin))
    if not wanted:
        return []
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, identities[name].password.encode())
        for name in sorted(wanted)
    ]
    for name, future in admin.alter_user_scram_credentials(upserts).items():
        try:
            future.result(timeout=_TIMEOUT)
        except KafkaException as exc:
            raise RuntimeError(f"could not set the credential of {name}: {exc}") from None
    logger.info("SCRAM users set: %s", ", ".join(sorted(wanted)))
    return sorted(wanted)

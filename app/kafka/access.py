"""Apply principals (SCRAM users) and their ACLs to a cluster through the Admin API.

All operations are idempotent: creating an ACL that exists changes nothing, users are only
upserted when missing (or when ``rotate`` names them), and :func:`revoke_stale` deletes
only ALLOW bindings its caller owns that are no longer wanted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
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

__all__ = ["apply_grants", "ensure_users", "granted", "revoke_stale", "scram_users"]

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


def _all_bindings(admin: AdminClient) -> list[AclBinding]:
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                  AclOperation.ANY, AclPermissionType.ANY)  # fmt: skip
    found: list[AclBinding] = admin.describe_acls(everything, request_timeout=_TIMEOUT).result(
        timeout=_TIMEOUT
    )
    return found


def _wait_visible(
    admin: AdminClient, bindings: list[AclBinding], timeout_s: float = 60, gone: bool = False
) -> None:
    """Wait until the broker enforces ``bindings`` (or their absence, ``gone``): an ACL
    change reaches the broker's authorizer only when it replays the metadata log (seen to
    take over 15 s on a busy box, with consumers meanwhile refused)."""
    wanted = {str(b) for b in bindings}
    deadline = time.monotonic() + timeout_s
    while True:
        present = {str(b) for b in _all_bindings(admin)}
        left = wanted & present if gone else wanted - present
        if not left:
            return
        if time.monotonic() > deadline:
            state = "still in force" if gone else "not in force"
            raise RuntimeError(f"{len(left)} ACLs {state} after {timeout_s:.0f} s")
        time.sleep(0.2)


def _grant_of(binding: AclBinding) -> Grant | None:
    """The Grant a binding expresses; None for anything fedstream never creates (DENY,
    a host other than *, other resource or principal types)."""
    pattern = binding.resource_pattern_type
    if (
        binding.permission_type != AclPermissionType.ALLOW
        or binding.host != "*"
        or not binding.principal.startswith("User:")
        or binding.restype not in (ResourceType.TOPIC, ResourceType.GROUP)
        or pattern not in (ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED)
    ):
        return None
    operation = AclOperation(binding.operation)
    return Grant(binding.principal.removeprefix("User:"), ResourceType(binding.restype).name,
                 binding.name, operation.name, pattern == ResourcePatternType.PREFIXED)  # fmt: skip


def _exact_filter(grant: Grant) -> AclBindingFilter:
    """A delete filter matching exactly the binding of ``grant``."""
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBindingFilter(ResourceType[grant.resource], grant.name, pattern,
                            f"User:{grant.principal}", "*", AclOperation[grant.operation],
                            AclPermissionType.ALLOW)  # fmt: skip


def granted(admin: AdminClient) -> list[Grant]:
    """Every ALLOW ACL on the cluster that fedstream could have created."""
    return [g for g in map(_grant_of, _all_bindings(admin)) if g is not None]


def revoke_stale(
    admin: AdminClient, wanted: Iterable[Grant], owns: Callable[[Grant], bool]
) -> list[Grant]:
    """Delete every ACL that ``owns`` claims for the caller and that is not ``wanted``
    (a removed tenant or silo, a topic or group no longer used); returns those deleted."""
    keep = set(wanted)
    stale = sorted({g for g in granted(admin) if owns(g) and g not in keep},
                   key=lambda g: (g.principal, g.resource, g.name, g.operation))  # fmt: skip
    if not stale:
        return []
    bindings = [_binding(g) for g in stale]
    filters = [_exact_filter(g) for g in stale]
    for binding, future in admin.delete_acls(filters, request_timeout=_TIMEOUT).items():
        try:
            future.result(timeout=_TIMEOUT)
        except KafkaException as exc:
            raise RuntimeError(f"could not delete ACL {binding}: {exc.args[0].str()}") from None
    _wait_visible(admin, bindings, gone=True)
    logger.info("ACLs: %d stale bindings deleted (%s)", len(stale),
                ", ".join(sorted({g.principal for g in stale})))  # fmt: skip
    return stale


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

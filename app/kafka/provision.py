"""Give a deployment's principals their credentials, SCRAM users and ACLs (as the admin).

``fedstream topics apply`` calls :func:`provision` after the catalogue, ``fl up`` calls it for
the silo groups of the model it trains, tests for their namespace. On an insecure
(plaintext) cluster there is nothing to do.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from app.kafka.access import apply_grants, ensure_users, revoke_stale
from app.kafka.admin import make_admin
from app.kafka.principals import (
    ADMIN,
    Grant,
    ensure_credentials,
    fl_grants,
    owned_by_fl,
    owned_by_stream,
    principal_names,
    site_grants,
    site_principal,
    stream_grants,
)
from app.kafka.security import KafkaIdentity, current, read_client_config, write_client_config

__all__ = ["ProvisionReport", "provision", "rotate_password"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProvisionReport:
    users_added: list[str]
    acls: int
    revoked: int = 0


def provision(
    bootstrap: str,
    namespace: str,
    silos: Iterable[int],
    tenants: Iterable[str],
    silo_groups: dict[int, str] | None = None,
    admin: KafkaIdentity | None = None,
    stream: bool = True,
    prune: Collection[str] = (),
    sites: Iterable[int] = (),
) -> ProvisionReport | None:
    """Credentials (beside the admin's client config), users and ACLs of every principal.

    ``silo_groups`` maps each silo to the consumer group its ClientApp commits in (the
    model's); without it only the stream side is granted, with ``stream=False`` only the
    federated side. ``prune`` names the sides whose stale ACLs are deleted afterwards:
    ``"stream"`` (the worker's, the bank's and every tenant's in the namespace, and those
    of silo principals no longer in ``silos``; ``topics apply``) and ``"fl"`` (the
    server's and those of ``silos``, e.g. the group of a model no longer trained;
    ``fl up``). ``sites`` are silos whose own cluster this is (a site with its own
    Kafka): each gets its ``site-<id>`` principal, which may write ``fl.model.global`` here
    (its SuperNode relays the global model). Returns None on a plaintext cluster.
    """
    ident = admin or current()
    if not ident.secure:
        return None
    silos, tenants, sites = list(silos), list(tenants), list(sites)
    added: list[str] = []
    if ident.path is not None and ident.principal == ADMIN and ident.ca is not None:
        # the local cluster's credential directory: new silos/tenants get their files here
        names = principal_names(silos, tenants) + [site_principal(s) for s in sites]
        identities = ensure_credentials(ident.path.parent, names, ident.bootstrap, ident.ca)
        added = ensure_users(make_admin(bootstrap, ident), identities)
    grants = stream_grants(namespace, silos, tenants) if stream else []
    if silo_groups:
        grants += fl_grants(sorted(silo_groups), silo_groups)
    grants += site_grants(sites)
    client = make_admin(bootstrap, ident)
    count = apply_grants(client, grants)
    owners: list[Callable[[Grant], bool]] = []
    if "stream" in prune:
        owners.append(lambda g: owned_by_stream(g, namespace, silos))
    if "fl" in prune:
        owners.append(lambda g: owned_by_fl(g, silos))
    revoked = revoke_stale(client, grants, lambda g: any(o(g) for o in owners)) if owners else []
    return ProvisionReport(added, count, len(revoked))


def rotate_password(bootstrap: str, principal: str, admin: KafkaIdentity | None = None) -> Path:
    """Give ``principal`` a new random password on the cluster and in its client config
    (beside the admin's); returns that file. Its running clients keep their sessions until
    they reconnect, then need the new file."""
    ident = admin or current()
    if not ident.secure or ident.path is None or ident.ca is None:
        raise RuntimeError("rotating a password needs the admin's client config (secure cluster)")
    path = ident.path.parent / f"{principal}.conf"
    if not path.exists():
        raise RuntimeError(f"{principal!r} has no client config in {path.parent}")
    fresh = write_client_config(
        path, replace(read_client_config(path), password=secrets.token_urlsafe(24))
    )
    ensure_users(make_admin(bootstrap, ident), {principal: fresh}, rotate=[principal])
    return path

"""Custom domains: which app owns a name. A claim document in the state store decides it."""

from __future__ import annotations

from provisioner.errors import DynoformError
from provisioner.store import Store


def claim(store: Store, app: str, domain: str) -> bool:
    """Claim `domain` for `app` (True if newly claimed; raises naming another owner).

    Apps that added a domain before claims existed hold it only in their record: such an
    owner gets its claim first, so the conditional create decides for everyone alike."""
    if store.domain_owner(domain) is None:
        legacy = _listed_by_other(store, app, domain)
        if legacy is not None:
            store.claim_domain(domain, legacy)
    return store.claim_domain(domain, app)


def _listed_by_other(store: Store, app: str, domain: str) -> str | None:
    for other in store.apps():
        try:
            listed = other != app and domain in store.app(other).domains
        except DynoformError:
            continue  # destroyed meanwhile
        if listed:
            return other
    return None

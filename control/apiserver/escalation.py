"""RBAC escalation prevention (pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased):
a write of a Role or ClusterRole must grant nothing its author does not hold, unless the author may `escalate`
it; a write of a binding must bind a role whose rules the author holds, unless the author may `bind` it.
system:masters is exempt (EscalationAllowed). A ClusterRole with an aggregationRule may grant anything, so
writing one takes full authority.

    escalation_check(authorizer, user, res, namespace) -> the Admit for the registry's write, or None
"""

from __future__ import annotations

from typing import Any

from control.apiserver import errors
from control.apiserver.auth import MASTERS, Attributes, Authorizer, User
from control.apiserver.noderestriction import forbidden
from control.apiserver.rbac import RBAC_GROUP, RoleNotFound, escalation_message, missing_rules
from control.apiserver.registry import Admit
from control.apiserver.resources import Resource

FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]
_GC_FIELDS = ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation")


def _only_gc_fields_change(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """IsOnlyMutatingGCFields: the garbage collector may always finish deleting an object."""
    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _GC_FIELDS}
        return {**obj, "metadata": meta}
    return strip(new) == strip(old)


def escalation_check(authorizer: Authorizer, user: User, res: Resource, namespace: str | None) -> Admit | None:
    if res.group != RBAC_GROUP or MASTERS in user.groups:
        return None
    ns = namespace or ""
    resolver = authorizer.rbac

    def refuse_unless_held(name: str, rules: list[dict[str, Any]]) -> None:
        owned, resolution_errors = resolver.rules_for(user, ns)
        missing = missing_rules(owned, rules)
        if missing:
            raise forbidden(res, name, escalation_message(user, missing, resolution_errors))

    def check_role(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if new is None or (old is not None and _only_gc_fields_change(new, old)):
            return
        name = str(new["metadata"].get("name", ""))
        if authorizer.authorize(Attributes(user, "escalate", RBAC_GROUP, res.plural, None, namespace,
                                           name)).allowed:
            return
        aggregates = isinstance(new.get("aggregationRule"), dict) and \
            bool(new["aggregationRule"].get("clusterRoleSelectors"))
        rules = FULL_AUTHORITY if aggregates else [r for r in new.get("rules") or [] if isinstance(r, dict)]
        refuse_unless_held(name, rules)

    def check_binding(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if new is None or (old is not None and _only_gc_fields_change(new, old)):
            return
        name = str(new["metadata"].get("name", ""))
        ref_value = new.get("roleRef")
        ref: dict[str, Any] = ref_value if isinstance(ref_value, dict) else {}
        role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if authorizer.authorize(Attributes(user, "bind", str(ref.get("apiGroup", RBAC_GROUP)), role_plural, None,
                                           namespace, str(ref.get("name", "")))).allowed:
            return
        try:
            rules = resolver.role_rules(ref, ns)
        except RoleNotFound as missing:
            raise errors.not_found(RBAC_GROUP, *missing.args) from None
        refuse_unless_held(name, rules)

    return check_role if res.plural in ("roles", "clusterroles") else check_binding


def compose(*checks: Admit | None) -> Admit | None:
    present = [c for c in checks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def admit(new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        for check in present:
            check(new, old)

    return admit


__all__ = ["compose", "escalation_check"]

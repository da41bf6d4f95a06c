"""Server-side apply: managedFields on every write, and PATCH application/apply-patch+yaml.

    fieldset.py  an object's field set and upstream's FieldsV1 encoding of it
    schema.py    per-kind list types (associative, set, atomic); register() plugs in another kind's schema
    managed.py   managedFields entries; record_update() for create, update and the other patch types
    merge.py     apply(): merge, removal of fields no longer applied, conflicts (409) and force

Errors are control.apiserver.errors.APIError: 400 for a malformed configuration or managedFields, 409 Conflict
with FieldManagerConflict causes, 422 for invalid managedFields entries.
"""

from control.apiserver.apply.managed import Scope, manager_from_user_agent, record_update
from control.apiserver.apply.merge import apply, check_config, conflict_error
from control.apiserver.apply.schema import KindSchema, ListType, register, schema_for, unregister

__all__ = ["KindSchema", "ListType", "Scope", "apply", "check_config", "conflict_error", "manager_from_user_agent",
           "record_update", "register", "schema_for", "unregister"]

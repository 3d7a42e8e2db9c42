"""LdapMessage / LdapSearch -> Zeek ldap.log / ldap_search.log rows. Empty values are left out (unset)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import ldap_pb2


def _printable(text: str) -> str:
    # Zeek shows control characters in LDAP strings (AD pads its diagnostics with NUL/newlines) as "?".
    return "".join("?" if ord(ch) < 0x20 else ch for ch in text)


def message_to_zeek(rec: ldap_pb2.LdapMessage) -> dict[str, Any]:
    row: dict[str, Any] = {"message_id": rec.message_id}
    opcode = rec.opcode
    argument = rec.argument
    if opcode == "bind":
        # Zeek folds the bind kind into the opcode and logs the mechanism (never a password).
        if argument == "simple":
            opcode, argument = "bind simple", "REDACTED"
        elif argument.startswith("SASL "):
            opcode, argument = "bind SASL", argument[5:]
        elif argument.startswith("sicily_"):
            opcode, argument = argument, "NTLMSSP"
    if rec.version:
        row["version"] = int(rec.version) if rec.version.isdigit() else rec.version
    row["opcode"] = opcode
    for key, value in (
        ("result", rec.result),
        ("diagnostic_message", _printable(rec.diagnostic_message)),
        ("object", rec.object),
        ("argument", argument),
    ):
        if value:
            row[key] = value
    return row


def search_to_zeek(rec: ldap_pb2.LdapSearch, attributes: bool = False) -> dict[str, Any]:
    """An ldap_search.log row. The requested attributes are written only with ``attributes`` (Zeek's
    LDAP::default_log_search_attributes, off by default); the record always keeps them."""
    row: dict[str, Any] = {
        "message_id": rec.message_id,
        "scope": rec.scope,
        "deref_aliases": rec.deref_aliases,
    }
    if rec.base_object:
        row["base_object"] = rec.base_object
    row["result_count"] = rec.result_count
    for key, value in (("result", rec.result), ("diagnostic_message", _printable(rec.diagnostic_message)),
                       ("filter", rec.filter)):  # fmt: skip
        if value:
            row[key] = value
    if attributes and rec.attributes:
        row["attributes"] = list(rec.attributes)
    return row

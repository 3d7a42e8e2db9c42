"""Zeek's log schemas (column names and types) and its TSV (``LogAscii``) value rendering.

The JSON rows of :mod:`sensor.logwriter` leave unset fields out and carry no types; Zeek's tab-separated
form needs both: every column of the log in Zeek's order, each declared with its Zeek type on the
``#types`` header line. The columns below are Zeek's own (the ``#fields``/``#types`` lines of the logs
Zeek writes, as in the reference logs under shared/corpus/reference/zeek), in Zeek's order, followed by
the columns Vigil adds (each listed in ``VIGIL_COLUMNS`` with where it comes from), so a reader that
knows Zeek's columns finds them where Zeek puts them.

TSV values follow Zeek's ASCII writer: times and intervals with six decimals, bools ``T``/``F``, ports
and counts as integers, sets and vectors joined by the set separator ``,``, an unset value ``-``, an
empty string or container ``(empty)``; in strings the separators, non-printable characters and a
backslash are escaped (``\\x09``, ``\\x2c``, ``\\\\``), and a string that reads as one of the markers gets
its first character escaped so a reader never mistakes it for unset or empty.
"""

from __future__ import annotations

from typing import Any

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY_FIELD = "(empty)"
UNSET_FIELD = "-"

_CONN_ID = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
)


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    """``"name:type name:type"`` -> ((name, type), ...)."""
    return tuple((name, ztype) for name, _, ztype in (item.partition(":") for item in spec.split()))


# Zeek's columns per log, then Vigil's additions (see VIGIL_COLUMNS).
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "conn": _CONN_ID
    + _cols(
        "proto:enum service:string duration:interval orig_bytes:count resp_bytes:count conn_state:string "
        "local_orig:bool local_resp:bool missed_bytes:count history:string orig_pkts:count "
        "orig_ip_bytes:count resp_pkts:count resp_ip_bytes:count tunnel_parents:set[string] ip_proto:count "
        # policy/protocols/conn/mac-logging, vlan-logging and community-id-logging
        "orig_l2_addr:string resp_l2_addr:string vlan:int inner_vlan:int community_id:string"
    ),
    "dns": _CONN_ID
    + _cols(
        "proto:enum trans_id:count rtt:interval query:string qclass:count qclass_name:string qtype:count "
        "qtype_name:string rcode:count rcode_name:string AA:bool TC:bool RD:bool RA:bool Z:count "
        "answers:vector[string] TTLs:vector[interval] rejected:bool opcode:count opcode_name:string"
    ),
    "http": _CONN_ID
    + _cols(
        "trans_depth:count method:string host:string uri:string referrer:string version:string "
        "user_agent:string origin:string request_body_len:count response_body_len:count status_code:count "
        "status_msg:string info_code:count info_msg:string tags:set[enum] username:string password:string "
        "proxied:set[string] orig_fuids:vector[string] orig_filenames:vector[string] "
        "orig_mime_types:vector[string] resp_fuids:vector[string] resp_filenames:vector[string] "
        "resp_mime_types:vector[string]"
    ),
    "ssl": _CONN_ID
    + _cols(
        "version:string cipher:string curve:string server_name:string resumed:bool last_alert:string "
        "next_protocol:string established:bool ssl_history:string cert_chain_fps:vector[string] "
        "client_cert_chain_fps:vector[string] sni_matches_cert:bool "
        "subject:string issuer:string ja3:string ja3s:string ja4:string"
    ),
    "websocket": _CONN_ID
    + _cols(
        "host:string uri:string user_agent:string subprotocol:string client_protocols:vector[string] "
        "server_protocols:vector[string] client_extensions:vector[string] server_extensions:vector[string]"
    ),
    "smb_mapping": _CONN_ID + _cols("path:string service:string native_file_system:string share_type:string"),
    "smb_files": _CONN_ID
    + _cols(
        "fuid:string action:enum path:string name:string size:count prev_name:string times.modified:time "
        "times.accessed:time times.created:time times.changed:time"
    ),
    "ntlm": _CONN_ID
    + _cols(
        "username:string hostname:string domainname:string server_nb_computer_name:string "
        "server_dns_computer_name:string server_tree_name:string success:bool"
    ),
    "ldap": _CONN_ID
    + _cols(
        "message_id:int version:int opcode:string result:string diagnostic_message:string object:string "
        "argument:string"
    ),
    "ldap_search": _CONN_ID
    + _cols(
        "message_id:int scope:string deref_aliases:string base_object:string result_count:count "
        "result:string diagnostic_message:string filter:string attributes:vector[string]"
    ),
    "kerberos": _CONN_ID
    + _cols(
        "request_type:string client:string service:string success:bool error_msg:string from:time "
        "till:time cipher:string forwardable:bool renewable:bool client_cert_subject:string "
        "client_cert_fuid:string server_cert_subject:string server_cert_fuid:string "
        "auth_ticket_sha256:string new_ticket_sha256:string error_code:count"
    ),
    "dce_rpc": _CONN_ID + _cols("rtt:interval named_pipe:string endpoint:string operation:string"),
    "dhcp": _cols(
        "ts:time uids:set[string] client_addr:addr server_addr:addr mac:string host_name:string "
        "client_fqdn:string domain:string requested_addr:addr assigned_addr:addr lease_time:interval "
        "client_message:string server_message:string msg_types:vector[string] duration:interval"
    ),
    "rdp": _CONN_ID
    + _cols(
        "cookie:string result:string security_protocol:string client_channels:vector[string] "
        "keyboard_layout:string client_build:string client_name:string client_dig_product_id:string "
        "desktop_width:count desktop_height:count requested_color_depth:string cert_type:string "
        "cert_count:count cert_permanent:bool encryption_level:string encryption_method:string "
        "requested_protocols:vector[string]"
    ),
    "smtp": _CONN_ID
    + _cols(
        "trans_depth:count helo:string mailfrom:string rcptto:set[string] date:string from:string "
        "to:set[string] cc:set[string] reply_to:string msg_id:string in_reply_to:string subject:string "
        "x_originating_ip:addr first_received:string second_received:string last_reply:string "
        "path:vector[addr] user_agent:string tls:bool fuids:vector[string] is_webmail:bool "
        "auth_mechanism:string auth_user:string auth_success:bool data_bytes:count"
    ),
    "ftp": _CONN_ID
    + _cols(
        "user:string password:string command:string arg:string mime_type:string file_size:count "
        "reply_code:count reply_msg:string data_channel.passive:bool data_channel.orig_h:addr "
        "data_channel.resp_h:addr data_channel.resp_p:port fuid:string "
        "logon_success:bool failed_logons_count:count data_bytes:count upload:bool"
    ),
    "weird": _CONN_ID + _cols("name:string addl:string notice:bool peer:string source:string"),
}

# Columns that are not in Zeek's log of that name (appended after Zeek's own), and why they are there.
VIGIL_COLUMNS: dict[str, tuple[str, ...]] = {
    "conn": ("orig_l2_addr", "resp_l2_addr", "vlan", "inner_vlan", "community_id"),  # Zeek policy scripts
    "ssl": ("subject", "issuer", "ja3", "ja3s", "ja4"),  # ssl.log before Zeek 6; JA3/JA4 packages
    "kerberos": ("error_code",),
    "rdp": ("requested_protocols",),
    "smtp": ("auth_mechanism", "auth_user", "auth_success", "data_bytes"),
    "ftp": ("logon_success", "failed_logons_count", "data_bytes", "upload"),
}


def _escape(text: str) -> str:
    """A string value as Zeek's ASCII writer prints it (see the module docstring)."""
    if not text:
        return EMPTY_FIELD
    if text.isprintable() and "\\" not in text:
        # Nearly every value: nothing to escape but a marker.
        return f"\\x{ord(text[0]):02x}{text[1:]}" if text in (UNSET_FIELD, EMPTY_FIELD) else text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    escaped = "".join(out)
    if escaped in (UNSET_FIELD, EMPTY_FIELD):
        escaped = f"\\x{ord(escaped[0]):02x}{escaped[1:]}"
    return escaped


def _scalar(value: Any, ztype: str, in_container: bool = False) -> str:
    if ztype in ("time", "interval", "double"):
        return f"{float(value):.6f}"
    if ztype in ("count", "int", "port"):
        return str(int(value))
    if ztype == "bool":
        return "T" if value else "F"
    text = _escape(str(value))
    if in_container and SET_SEPARATOR in text:
        text = text.replace(SET_SEPARATOR, f"\\x{ord(SET_SEPARATOR):02x}")
    return text


def tsv_value(value: Any, ztype: str) -> str:
    """One column's text: ``value`` as the JSON row holds it (None or absent: unset)."""
    if value is None:
        return UNSET_FIELD
    if ztype.startswith(("set[", "vector[")):
        items = list(value)
        if not items:
            return EMPTY_FIELD
        inner = ztype[ztype.index("[") + 1 : -1]
        return SET_SEPARATOR.join(_scalar(item, inner, in_container=True) for item in items)
    return _scalar(value, ztype)


def tsv_line(log: str, row: dict[str, Any]) -> str:
    """A row of ``log`` as one TSV line (no newline), its columns in the schema's order."""
    return SEPARATOR.join(tsv_value(row.get(name), ztype) for name, ztype in SCHEMAS[log])


def tsv_header(log: str, opened: str) -> str:
    """The header lines Zeek writes at the top of a TSV log (``opened``: the #open time, formatted)."""
    names = [name for name, _ in SCHEMAS[log]]
    types = [ztype for _, ztype in SCHEMAS[log]]
    return (
        "#separator \\x09\n"
        f"#set_separator{SEPARATOR}{SET_SEPARATOR}\n"
        f"#empty_field{SEPARATOR}{EMPTY_FIELD}\n"
        f"#unset_field{SEPARATOR}{UNSET_FIELD}\n"
        f"#path{SEPARATOR}{log}\n"
        f"#open{SEPARATOR}{opened}\n"
        f"#fields{SEPARATOR}{SEPARATOR.join(names)}\n"
        f"#types{SEPARATOR}{SEPARATOR.join(types)}\n"
    )


def tsv_footer(closed: str) -> str:
    return f"#close{SEPARATOR}{closed}\n"


def unlisted_columns(log: str, row: dict[str, Any]) -> list[str]:
    """Columns of ``row`` the schema of ``log`` does not have (they cannot appear in its TSV form)."""
    known = {name for name, _ in SCHEMAS[log]}
    return [key for key in row if key not in known]

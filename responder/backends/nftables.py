"""nftables backend: blocks are elements of timeout sets in Vigil's own ``inet`` table.

Why sets with per-element timeouts: the kernel lifts each block at its expiry on its own, so a crashed
or partitioned responder can never leave a device contained forever. Why one table: the responder
owns it entirely (it may delete and rebuild it) and never reads or writes anything outside it.

Every convergence is one ``nft -f -`` script, which nftables commits as a single transaction: either
the whole diff lands or nothing does. The layout (sets, chains, rules) is derived from
``responder.rules`` for both address families; rule comments carry a digest of that layout so a
tampered or outdated table is detected and rebuilt atomically together with its elements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import math
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from responder.actions import ActiveAction
from responder.backends.base import BackendError
from responder.rules import (
    ALLOW_SHAPES,
    BLOCK_SHAPES,
    FAMILIES,
    SPECS_BY_NAME,
    Element,
    Family,
    Field,
    KeyValue,
    SetSpec,
    compile_actions,
    set_specs,
)
from vigil.log import get

_log = get("responder.nftables")

_TYPES: dict[Family, dict[Field, str]] = {
    4: {"src": "ipv4_addr", "dst": "ipv4_addr", "proto": "inet_proto", "port": "inet_service"},
    6: {"src": "ipv6_addr", "dst": "ipv6_addr", "proto": "inet_proto", "port": "inet_service"},
}
_MATCH: dict[Family, dict[Field, str]] = {
    4: {"src": "ip saddr", "dst": "ip daddr", "proto": "meta l4proto", "port": "th dport"},
    6: {"src": "ip6 saddr", "dst": "ip6 daddr", "proto": "meta l4proto", "port": "th dport"},
}
_IP: dict[Family, str] = {4: "ip", 6: "ip6"}
# Forward covers a gateway between devices; input/output cover the host the responder runs on.
# `fwd` is an nft keyword, hence the longer names.
HOOK_CHAINS: tuple[tuple[str, str], ...] = (
    ("hook_input", "input"),
    ("hook_forward", "forward"),
    ("hook_output", "output"),
)
ENFORCE_CHAIN = "enforce"
# Just before the usual filter chains, so a Vigil drop is not pre-empted by a site's own accepts.
HOOK_PRIORITY = -10
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")
_PROTO_NAMES = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}
# A kernel timeout that differs from the wanted one by more than this is refreshed. Listing reports
# whole seconds (truncated), so anything below ~2 s is rounding, not a real difference.
_REFRESH_TOLERANCE_S = 2.0
# Extra elements about to expire are left to the kernel: deleting one that lapses between listing
# and commit would fail the whole transaction.
_LET_EXPIRE_S = 1.0


def _spec_type(spec: SetSpec) -> str:
    return " . ".join(_TYPES[spec.family][f] for f in spec.fields)


def _spec_flags(spec: SetSpec) -> list[str]:
    """Every set expires its elements; a set keyed on the peer also holds networks (block_connection to
    "10.0.0.0/8": cut a scanner off from the internal networks only), which needs interval matching."""
    return ["interval", "timeout"] if "dst" in spec.fields else ["timeout"]


def _rules() -> list[tuple[str, str]]:
    """(chain, rule text) in evaluation order, without comments."""
    rules: list[tuple[str, str]] = [(chain, f"jump {ENFORCE_CHAIN}") for chain, _ in HOOK_CHAINS]
    # Blocks first: a block always wins over a pattern-of-life allowance, and it also cuts
    # established connections (containment of a live C2 session).
    for family in FAMILIES:
        for shape in BLOCK_SHAPES:
            spec = SetSpec("block", shape, family)
            match = " . ".join(_MATCH[family][f] for f in shape)
            rules.append((ENFORCE_CHAIN, f"{match} @{spec.name} drop"))
    for family in FAMILIES:
        pol = SetSpec("pol", ("src",), family).name
        ip = _IP[family]
        # Pattern of life limits what the target originates; answering connections others opened to
        # it (the reply direction) is not origination.
        rules.append((ENFORCE_CHAIN, f"{ip} saddr @{pol} ct direction reply accept"))
        for shape in ALLOW_SHAPES:
            spec = SetSpec("allow", shape, family)
            match = " . ".join(_MATCH[family][f] for f in shape)
            rules.append((ENFORCE_CHAIN, f"{match} @{spec.name} accept"))
        rules.append((ENFORCE_CHAIN, f"{ip} saddr @{pol} drop"))
    return rules


def _layout_digest() -> str:
    text = "\n".join(f"{s.name}:{_spec_type(s)}:{','.join(_spec_flags(s))}" for s in set_specs())
    text += "\n" + "\n".join(f"{c}:{r}" for c, r in _rules())
    text += f"\n{HOOK_CHAINS}:{HOOK_PRIORITY}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


LAYOUT_DIGEST = _layout_digest()


def _comment(index: int) -> str:
    return f"vigil:{LAYOUT_DIGEST}:{index}"


def _element_text(element: Element) -> str:
    return " . ".join(str(v) for v in element.key)


def _timeout_s(expire_at: float, now: float) -> int:
    """Seconds until expiry, rounded up so the kernel never lifts a block early; at least 1."""
    return max(1, math.ceil(expire_at - now))


def layout_script(table: str) -> list[str]:
    """Commands that create the table's sets, chains and rules (the table itself must exist)."""
    lines = []
    for spec in set_specs():
        flags = ",".join(_spec_flags(spec))
        lines.append(f"add set inet {table} {spec.name} {{ type {_spec_type(spec)}; flags {flags}; }}")
    lines.append(f"add chain inet {table} {ENFORCE_CHAIN}")
    lines += [
        f"add chain inet {table} {chain} "
        f"{{ type filter hook {hook} priority {HOOK_PRIORITY}; policy accept; }}"
        for chain, hook in HOOK_CHAINS
    ]
    lines += [
        f'add rule inet {table} {chain} {rule} comment "{_comment(i)}"'
        for i, (chain, rule) in enumerate(_rules())
    ]
    return lines


def _normalize_value(field: Field, raw: Any) -> KeyValue:
    if field in ("src", "dst"):
        if isinstance(raw, dict) and "prefix" in raw:
            prefix = raw["prefix"]
            return str(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False))
        return str(ipaddress.ip_address(str(raw)))
    if isinstance(raw, int):
        return raw
    text = str(raw)
    if text.isdigit():
        return int(text)
    if field == "proto":
        return _PROTO_NAMES.get(text) or socket.getprotobyname(text)
    return socket.getservbyname(text)


def parse_table(listing: dict[str, Any]) -> tuple[bool, dict[Element, float | None]]:
    """From ``nft -j list table``: whether the layout is intact, and each element's seconds to expiry.

    An element without a timeout (someone added it by hand) reports ``None`` so it gets replaced by
    one that expires.
    """
    sets: dict[str, dict[str, Any]] = {}
    chains: dict[str, dict[str, Any]] = {}
    comments: dict[str, list[str]] = {}
    for item in listing.get("nftables", []):
        if "set" in item:
            sets[item["set"]["name"]] = item["set"]
        elif "chain" in item:
            chains[item["chain"]["name"]] = item["chain"]
        elif "rule" in item:
            rule = item["rule"]
            comments.setdefault(rule["chain"], []).append(rule.get("comment", ""))

    intact = True
    for spec in set_specs():
        found = sets.get(spec.name)
        want_type: Any = [_TYPES[spec.family][f] for f in spec.fields]
        if len(want_type) == 1:
            want_type = want_type[0]
        if (
            found is None
            or found.get("type") != want_type
            or set(found.get("flags", [])) != set(_spec_flags(spec))
        ):
            intact = False
    for chain, hook in HOOK_CHAINS:
        found = chains.get(chain)
        if found is None or (
            found.get("hook"),
            found.get("prio"),
            found.get("policy"),
            found.get("type"),
        ) != (
            hook,
            HOOK_PRIORITY,
            "accept",
            "filter",
        ):
            intact = False
    expected: dict[str, list[str]] = {}
    for i, (chain, _) in enumerate(_rules()):
        expected.setdefault(chain, []).append(_comment(i))
    if ENFORCE_CHAIN not in chains or any(comments.get(c, []) != want for c, want in expected.items()):
        intact = False

    elements: dict[Element, float | None] = {}
    for name, found in sets.items():
        found_spec = SPECS_BY_NAME.get(name)
        if found_spec is None:
            continue
        for entry in found.get("elem", []):
            expires: float | None = None
            val = entry
            if isinstance(entry, dict) and "elem" in entry:
                val = entry["elem"].get("val")
                if "expires" in entry["elem"]:
                    expires = float(entry["elem"]["expires"])
            parts = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
            try:
                key = tuple(_normalize_value(f, p) for f, p in zip(found_spec.fields, parts, strict=True))
            except (ValueError, OSError):
                # Something we cannot read (e.g. a range added by hand): the layout is not ours.
                intact = False
                continue
            elements[Element(name, key)] = expires
    return intact, elements


def diff_script(
    table: str, installed: dict[Element, float | None], want: dict[Element, float], now: float
) -> list[str]:
    """Commands turning ``installed`` into ``want``; empty when they already agree."""
    lines: list[str] = []
    for element in sorted(want):
        expire_at = want[element]
        remaining = expire_at - now
        if remaining <= 0:
            continue
        text = f"{{ {_element_text(element)} }}"
        if element in installed:
            have = installed[element]
            if have is not None and abs(have - remaining) <= _REFRESH_TOLERANCE_S:
                continue
            # A changed expiry: nftables does not update the timeout of an existing element, so it
            # is replaced inside the same transaction (no gap in enforcement).
            lines.append(f"delete element inet {table} {element.set_name} {text}")
        lines.append(
            f"add element inet {table} {element.set_name} "
            f"{{ {_element_text(element)} timeout {_timeout_s(expire_at, now)}s }}"
        )
    for element in sorted(installed):
        have = installed[element]
        if element in want or (have is not None and have <= _LET_EXPIRE_S):
            continue
        lines.append(f"delete element inet {table} {element.set_name} {{ {_element_text(element)} }}")
    return lines


def rebuild_script(table: str, want: dict[Element, float], now: float) -> list[str]:
    """Replace the whole table, layout and elements, in one transaction."""
    lines = [f"add table inet {table}", f"delete table inet {table}", f"add table inet {table}"]
    lines += layout_script(table)
    lines += diff_script(table, {}, want, now)
    return lines


class NftablesBackend:
    name = "nftables"

    def __init__(
        self,
        table: str = "vigil",
        netns: str | None = None,
        clock: Callable[[], float] = time.time,
        nft: str = "nft",
        command_timeout_s: float = 10.0,
    ) -> None:
        if not _NAME_RE.match(table):
            raise ValueError(f"nft table name {table!r} must be a letter followed by letters, digits or _")
        if netns is not None and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", netns):
            raise ValueError(f"network namespace name {netns!r} is not valid")
        self.table = table
        self.netns = netns
        self._clock = clock
        self._nft = nft
        self._timeout = command_timeout_s
        self._lock = asyncio.Lock()

    async def _run(self, args: Sequence[str], stdin: str | None = None) -> str:
        argv = [self._nft, *args]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise BackendError(
                f"{argv[0]!r} not found: install nftables (and iproute2 for netns) or fix PATH"
            ) from None
        except PermissionError:
            raise BackendError(f"{argv[0]!r} is not executable by this user") from None
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), self._timeout
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise BackendError(f"nft did not answer within {self._timeout:g}s") from None
        if proc.returncode != 0:
            raise self._explain(err.decode(errors="replace").strip())
        return out.decode(errors="replace")

    def _explain(self, stderr: str) -> BackendError:
        first = stderr.splitlines()[0] if stderr else "no error output"
        if "exec of" in stderr and "No such file" in stderr:
            return BackendError(f"nft not found inside network namespace {self.netns}: install nftables")
        if "Cannot open network namespace" in stderr:
            return BackendError(f"network namespace {self.netns!r} does not exist ({first})")
        if "Operation not permitted" in stderr or "Permission denied" in stderr:
            return BackendError(
                "nft is not permitted to change the ruleset: the responder needs CAP_NET_ADMIN "
                f"(run it as root or grant the capability) ({first})"
            )
        return BackendError(f"nft failed: {stderr[:2000]}")

    async def _list(self) -> dict[str, Any] | None:
        """The table as JSON, or None when it does not exist yet."""
        try:
            text = await self._run(["-j", "list", "table", "inet", self.table])
        except BackendError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        try:
            parsed: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"nft returned unreadable JSON: {exc}") from None
        return parsed

    async def apply(self, desired: Sequence[ActiveAction]) -> None:
        async with self._lock:
            want = compile_actions(desired)
            listing = await self._list()
            now = self._clock()
            if listing is None:
                lines = rebuild_script(self.table, want, now)
                _log.info("nftables_table_created", table=self.table, netns=self.netns, elements=len(want))
            else:
                intact, installed = parse_table(listing)
                if intact:
                    lines = diff_script(self.table, installed, want, now)
                else:
                    lines = rebuild_script(self.table, want, now)
                    _log.warning("nftables_layout_repaired", table=self.table, netns=self.netns)
            if not lines:
                return
            await self._run(["-f", "-"], "\n".join(lines) + "\n")
            _log.debug("nftables_applied", table=self.table, commands=len(lines))

    async def current(self) -> dict[Element, float]:
        listing = await self._list()
        if listing is None:
            return {}
        now = self._clock()
        _, installed = parse_table(listing)
        return {e: (now + left if left is not None else math.inf) for e, left in installed.items()}

    async def delete_table(self) -> None:
        """Remove the whole table (operators uninstalling, tests cleaning up); lifts every block."""
        await self._run(["-f", "-"], f"add table inet {self.table}\ndelete table inet {self.table}\n")

    async def close(self) -> None:
        # Deliberately leaves the table: blocks must outlive the process and lift by timeout.
        return None

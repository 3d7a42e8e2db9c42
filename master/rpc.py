"""What remote procedure calls and Kerberos exchanges mean for the models: one table from operation to the
count feature it adds to, so each model reads "how many of these, how improbable" like any other count.

Facts from Microsoft's open specifications (MS-SCMR, MS-TSCH, MS-WMI, MS-DRSR, MS-SAMR, MS-LSAT, MS-SRVS,
MS-WKST, MS-RRP, MS-RPRN, MS-EFSR, MS-DFSNM) and the public write-ups of the attacks that use them. The
operation names are the sensor's (sensor/protocols/dce_rpc/names.py, Zeek's spelling).

Nothing here decides alone: a backup server that creates services every night, or a management station
that reads remote registries, learns that as its normal; the same call from a laptop does not.
"""

from __future__ import annotations

from master.catalog import (
    COERCION_CALLS,
    DRS_REPLICATION,
    ENUM_CALLS,
    EPM_LOOKUPS,
    REGISTRY_CALLS,
    SCM_HOSTS,
    SERVICE_CHANGES,
    WMI_EXEC,
)


def _ops(endpoint: str, names: str) -> dict[tuple[str, str], str]:
    return {(endpoint, name): "" for name in names.split()}


def _table(feature: str, *groups: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    return {key: feature for group in groups for key in group}


# Installing and starting code on another host: a service (PsExec, smbexec, Impacket), a scheduled task
# (at, schtasks), or a printer driver (PrintNightmare loads any DLL as one).
_SERVICE_CHANGES = _table(
    SERVICE_CHANGES,
    _ops(
        "svcctl",
        "CreateServiceW CreateServiceA CreateServiceWOW64W CreateServiceWOW64A ChangeServiceConfigW "
        "ChangeServiceConfigA ChangeServiceConfig2W ChangeServiceConfig2A StartServiceW StartServiceA "
        "DeleteService CreateWowService",
    ),
    _ops("ITaskSchedulerService", "SchRpcRegisterTask SchRpcRun SchRpcEnableTask"),
    _ops("atsvc", "NetrJobAdd"),
    _ops("spoolss", "RpcAddPrinterDriver RpcAddPrinterDriverEx"),
)
# Opening another host's service manager: tools that look for where they are local administrator
# (PowerView's Find-LocalAdminAccess) open it on every host they can reach.
_SCM_OPENS = _table(SCM_HOSTS, _ops("svcctl", "OpenSCManagerW OpenSCManagerA OpenSCManager2"))
# WMI on another host: a method call (Win32_Process.Create) or a new instance (event filters and consumers
# of a WMI persistence).
_WMI = _table(WMI_EXEC, _ops("IWbemServices", "ExecMethod ExecMethodAsync PutInstance PutInstanceAsync"))
# DCOM automation: calls through IDispatch on another host's object (and calls on an object whose
# interface the capture never saw bound, which master/observe.py counts with them).
DCOM_AUTOMATION = "IDispatch"
# Replication asked of a domain controller (DCSync pulls secrets with GetNCChanges; DCShadow registers a
# rogue replica with ReplicaAdd / AddEntry): what only domain controllers do to each other.
_DRS = _table(DRS_REPLICATION, _ops("drsuapi", "DRSGetNCChanges DRSReplicaAdd DRSAddEntry DRSReplicaSync"))
# Listing accounts, group members, sessions and shares (net user /domain, BloodHound's collectors,
# PowerView). What Windows asks the domain controller for itself at logon and for group policy - the
# domains of the SAM server, a name looked up, trusted domains, SIDs translated - is left out: NEWYORK
# (OTRF) shows every workstation doing it.
_ENUMERATION = _table(
    ENUM_CALLS,
    _ops(
        "samr",
        "SamrEnumerateUsersInDomain SamrEnumerateGroupsInDomain SamrEnumerateAliasesInDomain "
        "SamrGetMembersInGroup SamrGetMembersInAlias SamrQueryDisplayInformation "
        "SamrQueryDisplayInformation2 SamrQueryDisplayInformation3",
    ),
    _ops("lsarpc", "LsarEnumerateAccounts LsarEnumerateAccountsWithUserRight LsarEnumerateAccountRights"),
    _ops("srvsvc", "NetrShareEnum NetrShareEnumSticky NetrSessionEnum NetrConnectionEnum NetrFileEnum"),
    _ops("wkssvc", "NetrWkstaUserEnum"),
)
# Of those, the calls that list everything at once (every user of the domain, every session on a host):
# what `net user /domain`, BloodHound and PowerView do and what Windows does not do for itself.
WHOLE_LISTINGS = frozenset(
    {
        ("samr", "SamrEnumerateUsersInDomain"),
        ("samr", "SamrEnumerateGroupsInDomain"),
        ("samr", "SamrEnumerateAliasesInDomain"),
        ("samr", "SamrQueryDisplayInformation"),
        ("samr", "SamrQueryDisplayInformation2"),
        ("samr", "SamrQueryDisplayInformation3"),
        ("srvsvc", "NetrSessionEnum"),
        ("wkssvc", "NetrWkstaUserEnum"),
        ("lsarpc", "LsarEnumerateAccounts"),
        ("lsarpc", "LsarEnumerateAccountsWithUserRight"),
    }
)
# Well-known relative ids of the groups an intruder wants to join or whose members it wants to know
# (MS-DTYP 2.4.2.4): the domain's own (Domain Admins 512, Schema Admins 518, Enterprise Admins 519, Group
# Policy Creator Owners 520, Key Admins 526, Enterprise Key Admins 527) and the built-in aliases
# (Administrators 544, Account Operators 548, Server Operators 549, Print Operators 550, Backup Operators
# 551). Their members listed over SAMR by `net group "Domain Admins" /domain`, PowerView and BloodHound;
# Windows itself opens Domain Admins at logon only to read its name (SamrQueryInformationGroup: NEWYORK).
PRIVILEGED_RIDS: dict[int, str] = {
    512: "Domain Admins",
    518: "Schema Admins",
    519: "Enterprise Admins",
    520: "Group Policy Creator Owners",
    526: "Key Admins",
    527: "Enterprise Key Admins",
    544: "Administrators",
    548: "Account Operators",
    549: "Server Operators",
    550: "Print Operators",
    551: "Backup Operators",
}
MEMBER_LISTINGS = frozenset({("samr", "SamrGetMembersInGroup"), ("samr", "SamrGetMembersInAlias")})
# Remote registry: reading who is logged on (PsLoggedOn, BloodHound), services and run keys, or writing them.
_REGISTRY = _table(
    REGISTRY_CALLS,
    _ops(
        "winreg",
        "OpenClassesRoot OpenCurrentUser OpenLocalMachine OpenUsers BaseRegCreateKey BaseRegDeleteKey "
        "BaseRegDeleteValue BaseRegEnumKey BaseRegEnumValue BaseRegOpenKey BaseRegQueryInfoKey "
        "BaseRegQueryValue BaseRegSaveKey BaseRegSaveKeyEx BaseRegSetValue BaseRegQueryMultipleValues "
        "BaseRegQueryMultipleValues2 BaseRegDeleteKeyEx BaseRegLoadKey BaseRegReplaceKey BaseRegRestoreKey",
    ),
)
# Calls that make a server authenticate to a path the caller names (printer bug, PetitPotam, DFSCoerce):
# the first step of an NTLM relay to a domain controller or a certificate authority.
_COERCION = _table(
    COERCION_CALLS,
    _ops(
        "spoolss",
        "RpcRemoteFindFirstPrinterChangeNotification RpcRemoteFindFirstPrinterChangeNotificationEx",
    ),
    _ops(
        "efsrpc",
        "EfsRpcOpenFileRaw EfsRpcEncryptFileSrv EfsRpcDecryptFileSrv EfsRpcQueryUsersOnFile "
        "EfsRpcQueryRecoveryAgents EfsRpcRemoveUsersFromFile EfsRpcAddUsersToFile EfsRpcFileKeyInfo "
        "EfsRpcDuplicateEncryptionInfoFile EfsRpcAddUsersToFileEx EfsRpcEncryptFileExSrv",
    ),
    _ops("netdfs", "NetrDfsAddStdRoot NetrDfsRemoveStdRoot"),
)

# Asking the endpoint mapper for every registered interface (rpcdump, nmap's msrpc-enum): a client that
# wants one service asks ept_map for it.
_EPM = _table(EPM_LOOKUPS, _ops("epmapper", "ept_lookup"))

RPC_FEATURES: dict[tuple[str, str], str] = {
    **_EPM,
    **_SERVICE_CHANGES,
    **_SCM_OPENS,
    **_WMI,
    **_DRS,
    **_ENUMERATION,
    **_REGISTRY,
    **_COERCION,
}
# Kerberos: errors an AS exchange gets for a wrong password or an account that does not exist (a
# "preauthentication required" answer is the normal first leg of every logon and is not one of them).
SPRAY_ERRORS = frozenset({"KDC_ERR_PREAUTH_FAILED", "KDC_ERR_C_PRINCIPAL_UNKNOWN", "KDC_ERR_CLIENT_REVOKED"})
# Kerberoasting asks for service tickets encrypted with RC4 (crackable offline) for user service accounts.
ROASTABLE_CIPHERS = frozenset({"rc4-hmac", "rc4-hmac-exp", "des-cbc-md5", "des-cbc-crc"})

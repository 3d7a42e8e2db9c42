"""Interface UUID -> endpoint name and opnum -> operation name, for dce_rpc.log.

Facts from Microsoft's open specifications (MS-RPCE, MS-SCMR, MS-DRSR, MS-SAMR, MS-LSAD/MS-LSAT,
MS-SRVS, MS-WKST, MS-RRP, MS-RPRN, MS-PAR, MS-EFSR, MS-TSCH, MS-WMI, MS-DCOM, MS-OAUT, MS-NRPC, MS-DSSP,
MS-DFSNM, MS-EVEN, MS-BKRP, MS-OXCRPC, MS-NSPI) and the C706 endpoint mapper. The endpoint names are the
ones Zeek's dce_rpc.log prints, so logs from both read alike; an interface or opnum without a name here
is printed as Zeek prints it, ``unknown-<uuid>`` / ``unknown-<opnum>``.

Each interface lists its operations as one string of names in opnum order starting at ``first`` (DCOM
interfaces start at 3: opnums 0-2 are IUnknown's, never called remotely); ``-`` marks an opnum the
specification leaves unused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    operations: tuple[str, ...] = ()
    first: int = 0

    def operation(self, opnum: int) -> str:
        at = opnum - self.first
        if 0 <= at < len(self.operations) and self.operations[at] != "-":
            return self.operations[at]
        return f"unknown-{opnum}"


INTERFACES: dict[str, Interface] = {}


def _add(uuid: str, name: str, operations: str = "", first: int = 0) -> None:
    INTERFACES[uuid] = Interface(name, tuple(operations.split()), first)


# -- endpoint mapper and RPC management (C706, MS-RPCE) -------------------------------------------
_add(
    "e1af8308-5d1f-11c9-91a4-08002b14a0fa",
    "epmapper",
    "ept_insert ept_delete ept_lookup ept_map ept_lookup_handle_free ept_inq_object ept_mgmt_delete "
    "ept_map_auth ept_map_auth_async",
)
_add(
    "afa8bd80-7d8a-11c9-bef4-08002b102989",
    "mgmt",
    "inq_if_ids inq_stats is_server_listening stop_server_listening inq_princ_name",
)

# -- services, tasks, registry ---------------------------------------------------------------------
# MS-SCMR 3.1.4: names as the W/A entry points (Zeek's spelling, without the R prefix of the IDL).
_add(
    "367abb81-9844-35f1-ad32-98f038001003",
    "svcctl",
    "CloseServiceHandle ControlService DeleteService LockServiceDatabase QueryServiceObjectSecurity "
    "SetServiceObjectSecurity QueryServiceStatus SetServiceStatus UnlockServiceDatabase "
    "NotifyBootConfigStatus ScSetServiceBitsW ChangeServiceConfigW CreateServiceW EnumDependentServicesW "
    "EnumServicesStatusW OpenSCManagerW OpenServiceW QueryServiceConfigW QueryServiceLockStatusW "
    "StartServiceW GetServiceDisplayNameW GetServiceKeyNameW ScSetServiceBitsA ChangeServiceConfigA "
    "CreateServiceA EnumDependentServicesA EnumServicesStatusA OpenSCManagerA OpenServiceA "
    "QueryServiceConfigA QueryServiceLockStatusA StartServiceA GetServiceDisplayNameA GetServiceKeyNameA "
    "ScGetCurrentGroupStateW EnumServiceGroupW ChangeServiceConfig2A ChangeServiceConfig2W "
    "QueryServiceConfig2A QueryServiceConfig2W QueryServiceStatusEx EnumServicesStatusExA "
    "EnumServicesStatusExW ScSendTSMessage CreateServiceWOW64A CreateServiceWOW64W ScQueryServiceTagInfo "
    "NotifyServiceStatusChange GetNotifyResult CloseNotifyHandle ControlServiceExA ControlServiceExW "
    "ScSendPnPMessage ScValidatePnPService ScOpenServiceStatusHandle - QueryServiceConfigEx - - - "
    "CreateWowService - - - OpenSCManager2",
)
_add("1ff70682-0a51-30e8-076d-740be8cee98b", "atsvc", "NetrJobAdd NetrJobDel NetrJobEnum NetrJobGetInfo")
_add(
    "378e52b0-c0a9-11cf-822d-00aa0051e40f",
    "sasec",
    "SASetAccountInformation SASetNSAccountInformation SAGetNSAccountInformation SAGetAccountInformation",
)
_add(
    "86d35949-83c9-4044-b424-db363231fd0c",
    "ITaskSchedulerService",
    "SchRpcHighestVersion SchRpcRegisterTask SchRpcRetrieveTask SchRpcCreateFolder SchRpcSetSecurity "
    "SchRpcGetSecurity SchRpcEnumFolders SchRpcEnumTasks SchRpcEnumInstances SchRpcGetInstanceInfo "
    "SchRpcStopInstance SchRpcStop SchRpcRun SchRpcDelete SchRpcRename SchRpcScheduledRuntimes "
    "SchRpcGetLastRunInfo SchRpcGetTaskInfo SchRpcGetNumberOfMissedRuns SchRpcEnableTask",
)
_add(
    "338cd001-2244-31f1-aaaa-900038001003",
    "winreg",
    "OpenClassesRoot OpenCurrentUser OpenLocalMachine OpenPerformanceData OpenUsers BaseRegCloseKey "
    "BaseRegCreateKey BaseRegDeleteKey BaseRegDeleteValue BaseRegEnumKey BaseRegEnumValue BaseRegFlushKey "
    "BaseRegGetKeySecurity BaseRegLoadKey BaseRegNotifyChangeKeyValue BaseRegOpenKey BaseRegQueryInfoKey "
    "BaseRegQueryValue BaseRegReplaceKey BaseRegRestoreKey BaseRegSaveKey BaseRegSetKeySecurity "
    "BaseRegSetValue BaseRegUnLoadKey BaseInitiateSystemShutdown BaseAbortSystemShutdown "
    "BaseRegGetVersion OpenCurrentConfig OpenDynData BaseRegQueryMultipleValues "
    "BaseInitiateSystemShutdownEx BaseRegSaveKeyEx OpenPerformanceText OpenPerformanceNlsText "
    "BaseRegQueryMultipleValues2 BaseRegDeleteKeyEx",
)
_add(
    "82273fdc-e32a-18c3-3f78-827929dc23ea",
    "eventlog",
    "ElfrClearELFW ElfrBackupELFW ElfrCloseEL ElfrDeregisterEventSource ElfrNumberOfRecords "
    "ElfrOldestRecord ElfrChangeNotify ElfrOpenELW ElfrRegisterEventSourceW ElfrOpenBELW ElfrReadELW "
    "ElfrReportEventW ElfrClearELFA ElfrBackupELFA ElfrOpenELA ElfrRegisterEventSourceA ElfrOpenBELA "
    "ElfrReadELA ElfrReportEventA ElfrRegisterClusterSvc ElfrDeregisterClusterSvc ElfrWriteClusterEvents "
    "ElfrGetLogInformation ElfrFlushEL ElfrReportEventAndSourceW",
)
_add(
    "894de0c0-0d55-11d3-a322-00c04fa321a1",
    "InitShutdown",
    "BaseInitiateShutdown BaseAbortShutdown BaseInitiateShutdownEx",
)
_add("d95afe70-a6d5-4259-822e-2c84da1ddb0d", "WindowsShutdown", "WsdrInitiateShutdown WsdrAbortShutdown")

# -- directory, accounts, policy ------------------------------------------------------------------
_add(
    "e3514235-4b06-11d1-ab04-00c04fc2dcd2",
    "drsuapi",
    "DRSBind DRSUnbind DRSReplicaSync DRSGetNCChanges DRSUpdateRefs DRSReplicaAdd DRSReplicaDel "
    "DRSReplicaModify DRSVerifyNames DRSGetMemberships DRSInterDomainMove DRSGetNT4ChangeLog "
    "DRSCrackNames DRSWriteSPN DRSRemoveDsServer DRSRemoveDsDomain DRSDomainControllerInfo DRSAddEntry "
    "DRSExecuteKCC DRSGetReplInfo DRSAddSidHistory DRSGetMemberships2 DRSReplicaVerifyObjects "
    "DRSGetObjectExistence DRSQuerySitesByCost DRSInitDemotion DRSReplicaDemotion DRSFinishDemotion "
    "DRSAddCloneDC DRSWriteNgcKey DRSReadNgcKey",
)
_add(
    "12345778-1234-abcd-ef00-0123456789ac",
    "samr",
    "SamrConnect SamrCloseHandle SamrSetSecurityObject SamrQuerySecurityObject SamrShutdownSamServer "
    "SamrLookupDomainInSamServer SamrEnumerateDomainsInSamServer SamrOpenDomain SamrQueryInformationDomain "
    "SamrSetInformationDomain SamrCreateGroupInDomain SamrEnumerateGroupsInDomain SamrCreateUserInDomain "
    "SamrEnumerateUsersInDomain SamrCreateAliasInDomain SamrEnumerateAliasesInDomain SamrGetAliasMembership "
    "SamrLookupNamesInDomain SamrLookupIdsInDomain SamrOpenGroup SamrQueryInformationGroup "
    "SamrSetInformationGroup SamrAddMemberToGroup SamrDeleteGroup SamrRemoveMemberFromGroup "
    "SamrGetMembersInGroup SamrSetMemberAttributesOfGroup SamrOpenAlias SamrQueryInformationAlias "
    "SamrSetInformationAlias SamrDeleteAlias SamrAddMemberToAlias SamrRemoveMemberFromAlias "
    "SamrGetMembersInAlias SamrOpenUser SamrDeleteUser SamrQueryInformationUser SamrSetInformationUser "
    "SamrChangePasswordUser SamrGetGroupsForUser SamrQueryDisplayInformation "
    "SamrGetDisplayEnumerationIndex SamrTestPrivateFunctionsDomain SamrTestPrivateFunctionsUser "
    "SamrGetUserDomainPasswordInformation SamrRemoveMemberFromForeignDomain SamrQueryInformationDomain2 "
    "SamrQueryInformationUser2 SamrQueryDisplayInformation2 SamrGetDisplayEnumerationIndex2 "
    "SamrCreateUser2InDomain SamrQueryDisplayInformation3 SamrAddMultipleMembersToAlias "
    "SamrRemoveMultipleMembersFromAlias SamrOemChangePasswordUser2 SamrUnicodeChangePasswordUser2 "
    "SamrGetDomainPasswordInformation SamrConnect2 SamrSetInformationUser2 SamrSetBootKeyInformation "
    "SamrGetBootKeyInformation SamrConnect3 SamrConnect4 SamrUnicodeChangePasswordUser3 SamrConnect5 "
    "SamrRidToSid SamrSetDSRMPassword SamrValidatePassword SamrQueryLocalizableAccountsInDomain "
    "SamrPerformGenericOperation",
)
# MS-LSAD and MS-LSAT share the interface; 60-67, 69, 75 and 82 belong to the credential manager.
_add(
    "12345778-1234-abcd-ef00-0123456789ab",
    "lsarpc",
    "LsarClose LsarDelete LsarEnumeratePrivileges LsarQuerySecurityObject LsarSetSecurityObject "
    "LsarChangePassword LsarOpenPolicy LsarQueryInformationPolicy LsarSetInformationPolicy "
    "LsarClearAuditLog LsarCreateAccount LsarEnumerateAccounts LsarCreateTrustedDomain "
    "LsarEnumerateTrustedDomains LsarLookupNames LsarLookupSids LsarCreateSecret LsarOpenAccount "
    "LsarEnumeratePrivilegesAccount LsarAddPrivilegesToAccount LsarRemovePrivilegesFromAccount "
    "LsarGetQuotasForAccount LsarSetQuotasForAccount LsarGetSystemAccessAccount "
    "LsarSetSystemAccessAccount LsarOpenTrustedDomain LsarQueryInfoTrustedDomain "
    "LsarSetInformationTrustedDomain LsarOpenSecret LsarSetSecret LsarQuerySecret "
    "LsarLookupPrivilegeValue LsarLookupPrivilegeName LsarLookupPrivilegeDisplayName LsarDeleteObject "
    "LsarEnumerateAccountsWithUserRight LsarEnumerateAccountRights LsarAddAccountRights "
    "LsarRemoveAccountRights LsarQueryTrustedDomainInfo LsarSetTrustedDomainInfo LsarDeleteTrustedDomain "
    "LsarStorePrivateData LsarRetrievePrivateData LsarOpenPolicy2 LsarGetUserName "
    "LsarQueryInformationPolicy2 LsarSetInformationPolicy2 LsarQueryTrustedDomainInfoByName "
    "LsarSetTrustedDomainInfoByName LsarEnumerateTrustedDomainsEx LsarCreateTrustedDomainEx "
    "LsarCloseTrustedDomainEx LsarQueryDomainInformationPolicy LsarSetDomainInformationPolicy "
    "LsarOpenTrustedDomainByName LsarTestCall LsarLookupSids2 LsarLookupNames2 "
    "LsarCreateTrustedDomainEx2 CredrWrite CredrRead CredrEnumerate CredrWriteDomainCredentials "
    "CredrReadDomainCredentials CredrDelete CredrGetTargetInfo CredrProfileLoaded LsarLookupNames3 "
    "CredrGetSessionTypes LsarRegisterAuditEvent LsarGenAuditEvent LsarUnregisterAuditEvent "
    "LsarQueryForestTrustInformation LsarSetForestTrustInformation CredrRename LsarLookupSids3 "
    "LsarLookupNames4 LsarOpenPolicySce LsarAdtRegisterSecurityEventSource "
    "LsarAdtUnregisterSecurityEventSource LsarAdtReportSecurityEvent",
)
_add(
    "3919286a-b10c-11d0-9ba8-00c04fd92ef5",
    "dssetup",
    "DsRolerGetPrimaryDomainInformation DsRolerDnsNameToFlatName DsRolerDcAsDc DsRolerDcAsReplica "
    "DsRolerDemoteDc DsRolerGetDcOperationProgress DsRolerGetDcOperationResults DsRolerCancel "
    "DsRolerServerSaveStateForUpgrade DsRolerUpgradeDownlevelServer DsRolerAbortDownlevelServerUpgrade",
)
_add(
    "12345678-1234-abcd-ef00-01234567cffb",
    "netlogon",
    "NetrLogonUasLogon NetrLogonUasLogoff NetrLogonSamLogon NetrLogonSamLogoff NetrServerReqChallenge "
    "NetrServerAuthenticate NetrServerPasswordSet NetrDatabaseDeltas NetrDatabaseSync NetrAccountDeltas "
    "NetrAccountSync NetrGetDCName NetrLogonControl NetrGetAnyDCName NetrLogonControl2 "
    "NetrServerAuthenticate2 NetrDatabaseSync2 NetrDatabaseRedo NetrLogonControl2Ex "
    "NetrEnumerateTrustedDomains DsrGetDcName NetrLogonGetCapabilities NetrLogonSetServiceBits "
    "NetrLogonGetTrustRid NetrLogonComputeServerDigest NetrLogonComputeClientDigest "
    "NetrServerAuthenticate3 DsrGetDcNameEx DsrGetSiteName NetrLogonGetDomainInfo NetrServerPasswordSet2 "
    "NetrServerPasswordGet NetrLogonSendToSam DsrAddressToSiteNamesW DsrGetDcNameEx2 "
    "NetrLogonGetTimeServiceParentDomain NetrEnumerateTrustedDomainsEx DsrAddressToSiteNamesExW "
    "DsrGetDcSiteCoverageW NetrLogonSamLogonEx DsrEnumerateDomainTrusts DsrDeregisterDnsHostRecords "
    "NetrServerTrustPasswordsGet DsrGetForestTrustInformation NetrGetForestTrustInformation "
    "NetrLogonSamLogonWithFlags NetrServerGetTrustInfo - DsrUpdateReadOnlyServerDnsRecords "
    "NetrChainSetClientAttributes",
)
_add("3dde7c30-165d-11d1-ab8f-00805f14db40", "BackupKey", "bkrp_BackupKey")

# -- shares, workstations, DFS --------------------------------------------------------------------
_add(
    "4b324fc8-1670-01d3-1278-5a47bf6ee188",
    "srvsvc",
    "NetrCharDevEnum NetrCharDevGetInfo NetrCharDevControl NetrCharDevQEnum NetrCharDevQGetInfo "
    "NetrCharDevQSetInfo NetrCharDevQPurge NetrCharDevQPurgeSelf NetrConnectionEnum NetrFileEnum "
    "NetrFileGetInfo NetrFileClose NetrSessionEnum NetrSessionDel NetrShareAdd NetrShareEnum "
    "NetrShareGetInfo NetrShareSetInfo NetrShareDel NetrShareDelSticky NetrShareCheck NetrServerGetInfo "
    "NetrServerSetInfo NetrServerDiskEnum NetrServerStatisticsGet NetrServerTransportAdd "
    "NetrServerTransportEnum NetrServerTransportDel NetrRemoteTOD NetrServerSetServiceBits NetprPathType "
    "NetprPathCanonicalize NetprPathCompare NetprNameValidate NetprNameCanonicalize NetprNameCompare "
    "NetrShareEnumSticky NetrShareDelStart NetrShareDelCommit NetrpGetFileSecurity NetrpSetFileSecurity "
    "NetrServerTransportAddEx NetrServerSetServiceBitsEx NetrDfsGetVersion NetrDfsCreateLocalPartition "
    "NetrDfsDeleteLocalPartition NetrDfsSetLocalVolumeState NetrDfsSetServerInfo NetrDfsCreateExitPoint "
    "NetrDfsDeleteExitPoint NetrDfsModifyPrefix NetrDfsFixLocalVolume NetrDfsManagerReportSiteInfo "
    "NetrServerTransportDelEx NetrServerAliasAdd NetrServerAliasEnum NetrServerAliasDel NetrShareDelEx",
)
_add(
    "6bffd098-a112-3610-9833-46c3f87e345a",
    "wkssvc",
    "NetrWkstaGetInfo NetrWkstaSetInfo NetrWkstaUserEnum NetrWkstaUserGetInfo NetrWkstaUserSetInfo "
    "NetrWkstaTransportEnum NetrWkstaTransportAdd NetrWkstaTransportDel NetrUseAdd NetrUseGetInfo "
    "NetrUseDel NetrUseEnum NetrMessageBufferSend NetrWorkstationStatisticsGet NetrLogonDomainNameAdd "
    "NetrLogonDomainNameDel NetrJoinDomain NetrUnjoinDomain NetrValidateName NetrRenameMachineInDomain "
    "NetrGetJoinInformation NetrGetJoinableOUs NetrJoinDomain2 NetrUnjoinDomain2 "
    "NetrRenameMachineInDomain2 NetrValidateName2 NetrGetJoinableOUs2 NetrAddAlternateComputerName "
    "NetrRemoveAlternateComputerName NetrSetPrimaryComputerName NetrEnumerateComputerNames "
    "NetrWorkstationResetDfsCache",
)
_add(
    "4fc742e0-4a10-11cf-8273-00aa004ae673",
    "netdfs",
    "NetrDfsManagerGetVersion NetrDfsAdd NetrDfsRemove NetrDfsSetInfo NetrDfsGetInfo NetrDfsEnum "
    "NetrDfsRename NetrDfsMove NetrDfsManagerGetConfigInfo NetrDfsManagerSendSiteInfo NetrDfsAddFtRoot "
    "NetrDfsRemoveFtRoot NetrDfsAddStdRoot NetrDfsRemoveStdRoot NetrDfsManagerInitialize "
    "NetrDfsAddStdRootForced NetrDfsGetDcAddress NetrDfsSetDcAddress NetrDfsFlushFtTable NetrDfsAdd2 "
    "NetrDfsRemove2 NetrDfsEnumEx NetrDfsSetInfo2 NetrDfsAddRootTarget NetrDfsRemoveRootTarget "
    "NetrDfsGetSupportedNamespaceVersion",
)
_add("6bffd098-a112-3610-9833-012892020162", "browser")

# -- printing (MS-RPRN, MS-PAR) -------------------------------------------------------------------
# 69 is RpcOpenPrinterEx in MS-RPRN; it is kept under the spooler's internal name RpcSplOpenPrinter,
# which is how Zeek's log spells (and by default leaves out) it.
_add(
    "12345678-1234-abcd-ef00-0123456789ab",
    "spoolss",
    "RpcEnumPrinters RpcOpenPrinter RpcSetJob RpcGetJob RpcEnumJobs RpcAddPrinter RpcDeletePrinter "
    "RpcSetPrinter RpcGetPrinter RpcAddPrinterDriver RpcEnumPrinterDrivers RpcGetPrinterDriver "
    "RpcGetPrinterDriverDirectory RpcDeletePrinterDriver RpcAddPrintProcessor RpcEnumPrintProcessors "
    "RpcGetPrintProcessorDirectory RpcStartDocPrinter RpcStartPagePrinter RpcWritePrinter "
    "RpcEndPagePrinter RpcAbortPrinter RpcReadPrinter RpcEndDocPrinter RpcAddJob RpcScheduleJob "
    "RpcGetPrinterData RpcSetPrinterData RpcWaitForPrinterChange RpcClosePrinter RpcAddForm "
    "RpcDeleteForm RpcGetForm RpcSetForm RpcEnumForms RpcEnumPorts RpcEnumMonitors RpcAddPort "
    "RpcConfigurePort RpcDeletePort RpcCreatePrinterIC RpcPlayGdiScriptOnPrinterIC RpcDeletePrinterIC "
    "RpcAddPrinterConnection RpcDeletePrinterConnection RpcPrinterMessageBox RpcAddMonitor "
    "RpcDeleteMonitor RpcDeletePrintProcessor RpcAddPrintProvidor RpcDeletePrintProvidor "
    "RpcEnumPrintProcessorDatatypes RpcResetPrinter RpcGetPrinterDriver2 "
    "RpcClientFindFirstPrinterChangeNotification RpcFindNextPrinterChangeNotification "
    "RpcFindClosePrinterChangeNotification RpcRouterFindFirstPrinterChangeNotificationOld "
    "RpcReplyOpenPrinter RpcRouterReplyPrinter RpcReplyClosePrinter RpcAddPortEx "
    "RpcRemoteFindFirstPrinterChangeNotification RpcSpoolerInit RpcResetPrinterEx "
    "RpcRemoteFindFirstPrinterChangeNotificationEx RpcRouterReplyPrinterEx "
    "RpcRouterRefreshPrinterChangeNotification RpcSetAllocFailCount RpcSplOpenPrinter RpcAddPrinterEx "
    "RpcSetPort RpcEnumPrinterData RpcDeletePrinterData RpcClusterSplOpen RpcClusterSplClose "
    "RpcClusterSplIsAlive RpcSetPrinterDataEx RpcGetPrinterDataEx RpcEnumPrinterDataEx RpcEnumPrinterKey "
    "RpcDeletePrinterDataEx RpcDeletePrinterKey RpcSeekPrinter RpcDeletePrinterDriverEx "
    "RpcAddPerMachineConnection RpcDeletePerMachineConnection RpcEnumPerMachineConnections RpcXcvData "
    "RpcAddPrinterDriverEx",
)
_add(
    "76f03f96-cdfd-44fc-a22c-64950a001209",
    "IRemoteWinspool",
    "RpcAsyncOpenPrinter RpcAsyncAddPrinter RpcAsyncSetJob RpcAsyncGetJob RpcAsyncEnumJobs RpcAsyncAddJob "
    "RpcAsyncScheduleJob RpcAsyncDeletePrinter RpcAsyncSetPrinter RpcAsyncGetPrinter "
    "RpcAsyncStartDocPrinter RpcAsyncStartPagePrinter RpcAsyncWritePrinter RpcAsyncEndPagePrinter "
    "RpcAsyncEndDocPrinter RpcAsyncAbortPrinter RpcAsyncGetPrinterData RpcAsyncGetPrinterDataEx "
    "RpcAsyncSetPrinterData RpcAsyncSetPrinterDataEx RpcAsyncClosePrinter RpcAsyncAddForm "
    "RpcAsyncDeleteForm RpcAsyncGetForm RpcAsyncSetForm RpcAsyncEnumForms RpcAsyncGetPrinterDriver "
    "RpcAsyncEnumPrinterData RpcAsyncEnumPrinterDataEx RpcAsyncEnumPrinterKey RpcAsyncDeletePrinterData "
    "RpcAsyncDeletePrinterDataEx RpcAsyncDeletePrinterKey RpcAsyncXcvData RpcAsyncSendRecvBidiData "
    "RpcAsyncCreatePrinterIC RpcAsyncPlayGdiScriptOnPrinterIC RpcAsyncDeletePrinterIC "
    "RpcAsyncEnumPrinters RpcAsyncAddPrinterDriver RpcAsyncEnumPrinterDrivers "
    "RpcAsyncGetPrinterDriverDirectory RpcAsyncDeletePrinterDriver RpcAsyncDeletePrinterDriverEx",
)

# -- encrypting file system (MS-EFSR): the same operations on two interfaces, \efsrpc and \lsarpc ----
_EFSR = (
    "EfsRpcOpenFileRaw EfsRpcReadFileRaw EfsRpcWriteFileRaw EfsRpcCloseRaw EfsRpcEncryptFileSrv "
    "EfsRpcDecryptFileSrv EfsRpcQueryUsersOnFile EfsRpcQueryRecoveryAgents EfsRpcRemoveUsersFromFile "
    "EfsRpcAddUsersToFile - EfsRpcNotSupported EfsRpcFileKeyInfo EfsRpcDuplicateEncryptionInfoFile - "
    "EfsRpcAddUsersToFileEx EfsRpcFileKeyInfoEx - EfsRpcGetEncryptedFileMetadata "
    "EfsRpcSetEncryptedFileMetadata EfsRpcFlushEfsCache EfsRpcEncryptFileExSrv EfsRpcQueryProtectors"
)
_add("df1941c5-fe89-4e79-bf10-463657acf44d", "efsrpc", _EFSR)
_add("c681d488-d850-11d0-8c52-00c04fd90f7e", "efsrpc", _EFSR)

# -- DCOM (MS-DCOM, MS-OAUT) ----------------------------------------------------------------------
# 000001a0 is the activator Windows calls ISystemActivator; MS-DCOM names it IRemoteSCMActivator.
_add(
    "000001a0-0000-0000-c000-000000000046",
    "IRemoteSCMActivator",
    "RemoteGetClassObject RemoteCreateInstance",
    first=3,
)
_add("4d9f4ab8-7d1c-11cf-861e-0020af6e7c57", "IActivation", "RemoteActivation")
# IOXIDResolver in MS-DCOM; the C706-era name is IObjectExporter.
_add(
    "99fcfec4-5260-101b-bbcb-00aa0021347a",
    "IObjectExporter",
    "ResolveOxid SimplePing ComplexPing ServerAlive ResolveOxid2 ServerAlive2",
)
_add("00000131-0000-0000-c000-000000000046", "IRemUnknown", "RemQueryInterface RemAddRef RemRelease", first=3)
_add(
    "00000143-0000-0000-c000-000000000046",
    "IRemUnknown2",
    "RemQueryInterface RemAddRef RemRelease RemQueryInterface2",
    first=3,
)
_add(
    "00020400-0000-0000-c000-000000000046",
    "IDispatch",
    "GetTypeInfoCount GetTypeInfo GetIDsOfNames Invoke",
    first=3,
)

# -- WMI (MS-WMI) ---------------------------------------------------------------------------------
_add(
    "f309ad18-d86a-11d0-a075-00c04fb68820",
    "IWbemLevel1Login",
    "EstablishPosition RequestChallenge WBEMLogin NTLMLogin",
    first=3,
)
_add(
    "9556dc99-828c-11cf-a37e-00aa003240c7",
    "IWbemServices",
    "OpenNamespace CancelAsyncCall QueryObjectSink GetObject GetObjectAsync PutClass PutClassAsync "
    "DeleteClass DeleteClassAsync CreateClassEnum CreateClassEnumAsync PutInstance PutInstanceAsync "
    "DeleteInstance DeleteInstanceAsync CreateInstanceEnum CreateInstanceEnumAsync ExecQuery "
    "ExecQueryAsync ExecNotificationQuery ExecNotificationQueryAsync ExecMethod ExecMethodAsync",
    first=3,
)
_add("d4781cd6-e5d3-44df-ad94-930efe48a887", "IWbemLoginClientID", "SetClientInfo", first=3)
_add(
    "027947e1-d731-11ce-a357-000000000001",
    "IEnumWbemClassObject interface",
    "Reset Next NextAsync Clone Skip",
    first=3,
)
_add(
    "44aca675-e8fc-11d0-a07c-00c04fb68820",
    "IWbemCallResult interface",
    "GetResultObject GetResultString GetResultServices GetCallStatus",
    first=3,
)
_add("7c857801-7381-11cf-884d-00aa004b2e24", "IWbemObjectSink interface", "Indicate SetStatus", first=3)
_add("dc12a681-737f-11cf-884d-00aa004b2e24", "IWbemClassObject interface")
_add("44aca674-e8fc-11d0-a07c-00c04fb68820", "IWbemContext interface")
_add("423ec01e-2e35-11d2-b604-00104b703efd", "IWbemWCOSmartEnum interface", "Next", first=3)
_add("1c1c45ee-4395-11d2-b60b-00104b703efd", "IWbemFetchSmartEnum interface", "GetSmartEnum", first=3)
_add(
    "f1e9c5b2-f59b-11d2-b362-00105a1f8177",
    "IWbemRemoteRefresher interface",
    "RemoteRefresh StopRefreshing Opnum5NotUsedOnWire",
    first=3,
)
_add("2c9273e0-1dc3-11d3-b364-00105a1f8177", "IWbemRefreshingServices interface")

# -- Exchange (MS-OXCRPC, MS-NSPI) ----------------------------------------------------------------
_add(
    "a4f1db00-ca47-1067-b31f-00dd010662da",
    "exchange_mapi",
    "EcDoConnect EcDoDisconnect EcDoRpc EcGetMoreRpc EcRRegisterPushNotification "
    "EcRUnregisterPushNotification EcDummyRpc EcRGetDCName EcRNetGetDCName EcDoRpcExt EcDoConnectEx "
    "EcDoRpcExt2 - - EcDoAsyncConnectEx",
)
_add(
    "f5cc5a18-4264-101a-8c59-08002b2f8426",
    "nspi",
    "NspiBind NspiUnbind NspiUpdateStat NspiQueryRows NspiSeekEntries NspiGetMatches "
    "NspiResortRestriction NspiDNToMId NspiGetPropList NspiGetProps NspiCompareMIds NspiModProps "
    "NspiGetSpecialTable NspiGetTemplateInfo NspiModLinkAtt - NspiQueryColumns - - NspiResolveNames "
    "NspiResolveNamesW",
)
_add("1544f5e0-613c-11d1-93df-00c04fd7bd09", "exchange_rfr")
_add("5261574a-4572-206e-b268-6b199213b4e4", "AsyncEMSMDB")

# -- others Zeek names, by endpoint only ----------------------------------------------------------
for _uuid, _name in (
    ("f5cc59b4-4264-101a-8c59-08002b2f8426", "FrsRpc"),
    ("0a74ef1c-41a4-4e06-83ae-dc74fb1cdd53", "idletask"),
    ("906b0ce0-c70b-1067-b317-00dd010662da", "IXnRemote"),
    ("ae33069b-a2a8-46ee-a235-ddfd339be281", "IRPCRemoteObject"),
    ("0b6edbfa-4a24-4fc6-8a23-942b1eca65d1", "IRPCAsyncNotify"),
    ("45f52c28-7f9f-101a-b52b-08002b2efabe", "winspipe"),
    ("51c82175-844e-4750-b0d8-ec255555bc06", "KMS"),
    ("50abc2a4-574d-40b3-9d66-ee4fd5fba076", "dnsserver"),
    ("3faf4738-3a21-4307-b46c-fdda9bb8c0d5", "AudioSrv"),
    ("c386ca3e-9061-4a72-821e-498d83be188f", "AudioRpc"),
    ("91ae6020-9e3c-11cf-8d7c-00aa00c091be", "ICertPassage"),
    ("c8cb7687-e6d3-11d2-a958-00c04f682e16", "DAV RPC SERVICE"),
    ("3d267954-eeb7-11d1-b94e-00c04fa3080d", "HydraLsPipe"),
    ("8d0ffe72-d252-11d0-bf8f-00c04fd9126b", "IKeySvc"),
    ("68b58241-c259-4f03-a2e5-a2651dcbc930", "IKeySvc2"),
    ("0d72a7d4-6148-11d1-b4aa-00c04fb66ea0", "ICertProtect"),
    ("f50aac00-c7f3-428e-a022-a6b71bfb9d43", "ICatDBSvc"),
    ("3c4728c5-f0ab-448b-bda1-6ce01eb0a6d5", "RpcSrvDHCPC"),
    ("3c4728c5-f0ab-448b-bda1-6ce01eb0a6d6", "dhcpcsvc6"),
    ("2f59a331-bf7d-48cb-9ec5-7c090d76e8b8", "lcrpc"),
    ("5ca4a760-ebb1-11cf-8611-00a0245420ed", "winstation_rpc"),
    ("12b81e99-f207-4a4c-85d3-77b42f76fd14", "ISeclogon"),
    ("8d9f4e40-a03d-11ce-8f69-08003e30051b", "pnp"),
    ("17fdd703-1827-4e34-79d4-24a55c53bb37", "msgsvc"),
    ("5a7b91f8-ff00-11d0-a9b2-00c04fb6e6fc", "msgsvcsend"),
):
    _add(_uuid, _name)

# A pipe carries one interface often enough that, when the capture missed the bind, the pipe names it.
# Only unambiguous pipes are listed (\lsarpc carries lsarpc, dssetup, efsrpc and more).
PIPE_INTERFACES: dict[str, str] = {
    "svcctl": "367abb81-9844-35f1-ad32-98f038001003",
    "srvsvc": "4b324fc8-1670-01d3-1278-5a47bf6ee188",
    "wkssvc": "6bffd098-a112-3610-9833-46c3f87e345a",
    "winreg": "338cd001-2244-31f1-aaaa-900038001003",
    "spoolss": "12345678-1234-abcd-ef00-0123456789ab",
    "atsvc": "1ff70682-0a51-30e8-076d-740be8cee98b",
    "efsrpc": "df1941c5-fe89-4e79-bf10-463657acf44d",
    "netdfs": "4fc742e0-4a10-11cf-8273-00aa004ae673",
    "eventlog": "82273fdc-e32a-18c3-3f78-827929dc23ea",
}

# Operations Zeek's dce_rpc.log leaves out by default (DCE_RPC::ignored_operations) as routine noise:
# the sensor still emits their records, only the Zeek-format log drops them.
ZEEK_IGNORED_OPERATIONS: dict[str, frozenset[str]] = {
    "winreg": frozenset(
        {
            "BaseRegCloseKey",
            "BaseRegGetVersion",
            "BaseRegOpenKey",
            "BaseRegQueryValue",
            "BaseRegDeleteKeyEx",
            "OpenLocalMachine",
            "BaseRegEnumKey",
            "OpenClassesRoot",
        }
    ),
    "spoolss": frozenset({"RpcSplOpenPrinter", "RpcClosePrinter"}),
    "wkssvc": frozenset({"NetrWkstaGetInfo"}),
}


def endpoint_name(interface: str) -> str:
    known = INTERFACES.get(interface)
    return known.name if known is not None else f"unknown-{interface}"


def operation_name(interface: str, opnum: int) -> str:
    known = INTERFACES.get(interface)
    return known.operation(opnum) if known is not None else f"unknown-{opnum}"


def pipe_interface(pipe: str) -> str:
    """The interface a pipe name ("\\PIPE\\srvsvc", "srvsvc", "\\svcctl") usually carries, or ""."""
    name = pipe.replace("/", "\\").rstrip("\x00").rsplit("\\", 1)[-1].lower()
    return PIPE_INTERFACES.get(name, "")

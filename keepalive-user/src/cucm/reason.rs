//! The Reason codes of CUCM's `EndPointUnregistered` and `EndPointTransientConnection` alarms,
//! and what each says about the network.
//!
//! Source: Cisco Unified Communications Manager *System Error Messages* (alarm
//! `EndPointUnregistered`, "Enum Definitions - Reason Code"; the same table as the
//! `DeviceUnregistered` alarm of the Release 8.0(1) *Managed Services Guide*, OL-20105-01,
//! chapter 6): 1 Unknown, 6 ConnectivityError, 8 DeviceInitiatedReset, 9 CallManagerReset,
//! 10 DeviceUnregistered, 11 MalformedRegisterMsg, 12 SCCPDeviceThrottling,
//! 13 KeepAliveTimeout, 14 ConfigurationMismatch, 15 CallManagerRestart,
//! 16 DuplicateRegistration, 17 CallManagerApplyConfig, 18 DeviceNoResponse,
//! 19 EMLoginLogout, 20 EMCCLoginLogout, 21 EnergySavingMode (PowerSave Plus),
//! 22 CallManagerForcedRestart, 23 SourceIPAddrChanged, 24 SourcePortChanged,
//! 25 RegistrationSequenceError, 26 InvalidCapabilities, 27 CapabilityResponseTimeout,
//! 28 SecurityMismatch, 29 AutoRegisterDBError, 30 DBAccessError,
//! 31 AutoRegisterDBConfigTimeout, 32 DeviceTypeMismatch, 33 AddressingModeMismatch.
//! A code not in the table is kept as [`Reason::Other`].

use serde::Serialize;

/// One Reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 1: unregistered for an unknown reason.
    Unknown,
    /// 6: network communication between the device and CUCM was interrupted.
    ConnectivityError,
    /// 8: the device reset itself (power cycle, internal error).
    DeviceInitiatedReset,
    /// 9: a reset from CUCM Administration.
    CallManagerReset,
    /// 10: the device unregistered explicitly.
    DeviceUnregistered,
    /// 11: a SIP REGISTER that could not be processed.
    MalformedRegisterMsg,
    /// 12: an SCCP device exceeded the events it is allowed.
    SccpDeviceThrottling,
    /// 13: CUCM did not receive a KeepAlive from the device.
    KeepAliveTimeout,
    /// 14: the device's configuration does not match CUCM's.
    ConfigurationMismatch,
    /// 15: a restart from CUCM Administration.
    CallManagerRestart,
    /// 16: the device registered to two nodes at once.
    DuplicateRegistration,
    /// 17: an ApplyConfig from CUCM Administration.
    CallManagerApplyConfig,
    /// 18: the device did not answer a reset or restart.
    DeviceNoResponse,
    /// 19: Extension Mobility login or logout.
    EmLoginLogout,
    /// 20: Extension Mobility Cross Cluster login or logout.
    EmccLoginLogout,
    /// 21: the device entered energy saving mode.
    EnergySavingMode,
    /// 22: CUCM forced a restart.
    CallManagerForcedRestart,
    /// 23: the device's source address changed.
    SourceIpAddrChanged,
    /// 24: the device's source port changed.
    SourcePortChanged,
    /// 25: registration messages out of sequence.
    RegistrationSequenceError,
    /// 26: the device's capabilities were invalid.
    InvalidCapabilities,
    /// 27: the device did not send its capabilities in time.
    CapabilityResponseTimeout,
    /// 28: the device's security settings do not match CUCM's.
    SecurityMismatch,
    /// 29: auto-registration failed in the database.
    AutoRegisterDbError,
    /// 30: a database access error.
    DbAccessError,
    /// 31: auto-registration timed out in the database.
    AutoRegisterDbConfigTimeout,
    /// 32: the device type does not match.
    DeviceTypeMismatch,
    /// 33: the addressing mode (IPv4/IPv6) does not match.
    AddressingModeMismatch,
    /// A code not in the table.
    Other(u32),
}

/// What a reason says about the path between the phone and CUCM, for the scoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Keepalives or connectivity were lost: what keepalive forecasts. Scored.
    Connectivity,
    /// CUCM itself reset, restarted or reconfigured the device (or itself): not the network.
    /// Neither a miss nor a confirmation.
    Server,
    /// The device or a person did it on purpose (a reset, a logout, energy saving): not a
    /// loss, and not a false alarm for a forecast that was pending.
    Intentional,
    /// Registration or configuration problems the wire's timing does not forecast.
    Other,
}

impl Class {
    /// The spelling in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Connectivity => "connectivity",
            Class::Server => "server",
            Class::Intentional => "intentional",
            Class::Other => "other",
        }
    }
}

impl Reason {
    /// The reason for code `code`.
    pub fn from_code(code: u32) -> Self {
        use Reason::*;
        match code {
            1 => Unknown,
            6 => ConnectivityError,
            8 => DeviceInitiatedReset,
            9 => CallManagerReset,
            10 => DeviceUnregistered,
            11 => MalformedRegisterMsg,
            12 => SccpDeviceThrottling,
            13 => KeepAliveTimeout,
            14 => ConfigurationMismatch,
            15 => CallManagerRestart,
            16 => DuplicateRegistration,
            17 => CallManagerApplyConfig,
            18 => DeviceNoResponse,
            19 => EmLoginLogout,
            20 => EmccLoginLogout,
            21 => EnergySavingMode,
            22 => CallManagerForcedRestart,
            23 => SourceIpAddrChanged,
            24 => SourcePortChanged,
            25 => RegistrationSequenceError,
            26 => InvalidCapabilities,
            27 => CapabilityResponseTimeout,
            28 => SecurityMismatch,
            29 => AutoRegisterDbError,
            30 => DbAccessError,
            31 => AutoRegisterDbConfigTimeout,
            32 => DeviceTypeMismatch,
            33 => AddressingModeMismatch,
            other => Other(other),
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u32 {
        use Reason::*;
        match self {
            Unknown => 1,
            ConnectivityError => 6,
            DeviceInitiatedReset => 8,
            CallManagerReset => 9,
            DeviceUnregistered => 10,
            MalformedRegisterMsg => 11,
            SccpDeviceThrottling => 12,
            KeepAliveTimeout => 13,
            ConfigurationMismatch => 14,
            CallManagerRestart => 15,
            DuplicateRegistration => 16,
            CallManagerApplyConfig => 17,
            DeviceNoResponse => 18,
            EmLoginLogout => 19,
            EmccLoginLogout => 20,
            EnergySavingMode => 21,
            CallManagerForcedRestart => 22,
            SourceIpAddrChanged => 23,
            SourcePortChanged => 24,
            RegistrationSequenceError => 25,
            InvalidCapabilities => 26,
            CapabilityResponseTimeout => 27,
            SecurityMismatch => 28,
            AutoRegisterDbError => 29,
            DbAccessError => 30,
            AutoRegisterDbConfigTimeout => 31,
            DeviceTypeMismatch => 32,
            AddressingModeMismatch => 33,
            Other(c) => c,
        }
    }

    /// CUCM's name for it.
    pub fn name(self) -> &'static str {
        use Reason::*;
        match self {
            Unknown => "Unknown",
            ConnectivityError => "ConnectivityError",
            DeviceInitiatedReset => "DeviceInitiatedReset",
            CallManagerReset => "CallManagerReset",
            DeviceUnregistered => "DeviceUnregistered",
            MalformedRegisterMsg => "MalformedRegisterMsg",
            SccpDeviceThrottling => "SCCPDeviceThrottling",
            KeepAliveTimeout => "KeepAliveTimeout",
            ConfigurationMismatch => "ConfigurationMismatch",
            CallManagerRestart => "CallManagerRestart",
            DuplicateRegistration => "DuplicateRegistration",
            CallManagerApplyConfig => "CallManagerApplyConfig",
            DeviceNoResponse => "DeviceNoResponse",
            EmLoginLogout => "EMLoginLogout",
            EmccLoginLogout => "EMCCLoginLogout",
            EnergySavingMode => "EnergySavingMode",
            CallManagerForcedRestart => "CallManagerForcedRestart",
            SourceIpAddrChanged => "SourceIPAddrChanged",
            SourcePortChanged => "SourcePortChanged",
            RegistrationSequenceError => "RegistrationSequenceError",
            InvalidCapabilities => "InvalidCapabilities",
            CapabilityResponseTimeout => "CapabilityResponseTimeout",
            SecurityMismatch => "SecurityMismatch",
            AutoRegisterDbError => "AutoRegisterDBError",
            DbAccessError => "DBAccessError",
            AutoRegisterDbConfigTimeout => "AutoRegisterDBConfigTimeout",
            DeviceTypeMismatch => "DeviceTypeMismatch",
            AddressingModeMismatch => "AddressingModeMismatch",
            Other(_) => "Other",
        }
    }

    /// What it says about the network.
    pub fn class(self) -> Class {
        use Reason::*;
        match self {
            ConnectivityError | KeepAliveTimeout => Class::Connectivity,
            CallManagerReset
            | CallManagerRestart
            | CallManagerApplyConfig
            | CallManagerForcedRestart
            | DuplicateRegistration
            | DeviceNoResponse => Class::Server,
            DeviceInitiatedReset | DeviceUnregistered | EmLoginLogout | EmccLoginLogout
            | EnergySavingMode | SourceIpAddrChanged | SourcePortChanged => Class::Intentional,
            _ => Class::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_keepalive_loss_is_scored() {
        for code in 0..40 {
            assert_eq!(Reason::from_code(code).code(), code);
        }
        assert_eq!(Reason::from_code(13), Reason::KeepAliveTimeout);
        assert_eq!(Reason::from_code(13).class(), Class::Connectivity);
        assert_eq!(Reason::from_code(6).class(), Class::Connectivity);
        assert_eq!(Reason::from_code(15).class(), Class::Server);
        assert_eq!(Reason::from_code(8).class(), Class::Intentional);
        assert_eq!(Reason::from_code(99), Reason::Other(99));
        assert_eq!(Reason::from_code(12).name(), "SCCPDeviceThrottling");
    }
}

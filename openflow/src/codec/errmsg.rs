//! `OFPT_ERROR`: the switch's error replies, decoded into named types and
//! codes, with the failed request's header recovered from the error data.

use std::fmt;

use super::buf::{Put, Reader};
use super::oxm::{NX_EXPERIMENTER, ONF_EXPERIMENTER};
use crate::error::Result;

/// A decoded `OFPT_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorMsg {
    /// `OFPET_*`; 0xffff for experimenter errors.
    pub err_type: u16,
    /// `OFPxxC_*` within the type; for experimenter errors the
    /// experimenter's own type (`exp_type`).
    pub code: u16,
    /// For experimenter errors: the experimenter id (Nicira, ONF, ...).
    pub experimenter: Option<u32>,
    /// Usually the first bytes (at least 64) of the request that failed.
    pub data: Vec<u8>,
}

/// Error types (`OFPET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    HelloFailed,
    BadRequest,
    BadAction,
    BadInstruction,
    BadMatch,
    FlowModFailed,
    GroupModFailed,
    PortModFailed,
    TableModFailed,
    QueueOpFailed,
    SwitchConfigFailed,
    RoleRequestFailed,
    MeterModFailed,
    TableFeaturesFailed,
    BadProperty,
    AsyncConfigFailed,
    FlowMonitorFailed,
    BundleFailed,
    Experimenter,
    Other(u16),
}

const TYPE_NAMES: [&str; 18] = [
    "OFPET_HELLO_FAILED",
    "OFPET_BAD_REQUEST",
    "OFPET_BAD_ACTION",
    "OFPET_BAD_INSTRUCTION",
    "OFPET_BAD_MATCH",
    "OFPET_FLOW_MOD_FAILED",
    "OFPET_GROUP_MOD_FAILED",
    "OFPET_PORT_MOD_FAILED",
    "OFPET_TABLE_MOD_FAILED",
    "OFPET_QUEUE_OP_FAILED",
    "OFPET_SWITCH_CONFIG_FAILED",
    "OFPET_ROLE_REQUEST_FAILED",
    "OFPET_METER_MOD_FAILED",
    "OFPET_TABLE_FEATURES_FAILED",
    "OFPET_BAD_PROPERTY",
    "OFPET_ASYNC_CONFIG_FAILED",
    "OFPET_FLOW_MONITOR_FAILED",
    "OFPET_BUNDLE_FAILED",
];

/// Code names of the error types a controller meets most.
fn code_name(err_type: u16, code: u16) -> Option<&'static str> {
    let table: &[&str] = match err_type {
        0 => &["OFPHFC_INCOMPATIBLE", "OFPHFC_EPERM"],
        1 => &[
            "OFPBRC_BAD_VERSION",
            "OFPBRC_BAD_TYPE",
            "OFPBRC_BAD_MULTIPART",
            "OFPBRC_BAD_EXPERIMENTER",
            "OFPBRC_BAD_EXP_TYPE",
            "OFPBRC_EPERM",
            "OFPBRC_BAD_LEN",
            "OFPBRC_BUFFER_EMPTY",
            "OFPBRC_BUFFER_UNKNOWN",
            "OFPBRC_BAD_TABLE_ID",
            "OFPBRC_IS_SLAVE",
            "OFPBRC_BAD_PORT",
            "OFPBRC_BAD_PACKET",
            "OFPBRC_MULTIPART_BUFFER_OVERFLOW",
        ],
        2 => &[
            "OFPBAC_BAD_TYPE",
            "OFPBAC_BAD_LEN",
            "OFPBAC_BAD_EXPERIMENTER",
            "OFPBAC_BAD_EXP_TYPE",
            "OFPBAC_BAD_OUT_PORT",
            "OFPBAC_BAD_ARGUMENT",
            "OFPBAC_EPERM",
            "OFPBAC_TOO_MANY",
            "OFPBAC_BAD_QUEUE",
            "OFPBAC_BAD_OUT_GROUP",
            "OFPBAC_MATCH_INCONSISTENT",
            "OFPBAC_UNSUPPORTED_ORDER",
            "OFPBAC_BAD_TAG",
            "OFPBAC_BAD_SET_TYPE",
            "OFPBAC_BAD_SET_LEN",
            "OFPBAC_BAD_SET_ARGUMENT",
        ],
        3 => &[
            "OFPBIC_UNKNOWN_INST",
            "OFPBIC_UNSUP_INST",
            "OFPBIC_BAD_TABLE_ID",
            "OFPBIC_UNSUP_METADATA",
            "OFPBIC_UNSUP_METADATA_MASK",
            "OFPBIC_BAD_EXPERIMENTER",
            "OFPBIC_BAD_EXP_TYPE",
            "OFPBIC_BAD_LEN",
            "OFPBIC_EPERM",
        ],
        4 => &[
            "OFPBMC_BAD_TYPE",
            "OFPBMC_BAD_LEN",
            "OFPBMC_BAD_TAG",
            "OFPBMC_BAD_DL_ADDR_MASK",
            "OFPBMC_BAD_NW_ADDR_MASK",
            "OFPBMC_BAD_WILDCARDS",
            "OFPBMC_BAD_FIELD",
            "OFPBMC_BAD_VALUE",
            "OFPBMC_BAD_MASK",
            "OFPBMC_BAD_PREREQ",
            "OFPBMC_DUP_FIELD",
            "OFPBMC_EPERM",
        ],
        5 => &[
            "OFPFMFC_UNKNOWN",
            "OFPFMFC_TABLE_FULL",
            "OFPFMFC_BAD_TABLE_ID",
            "OFPFMFC_OVERLAP",
            "OFPFMFC_EPERM",
            "OFPFMFC_BAD_TIMEOUT",
            "OFPFMFC_BAD_COMMAND",
            "OFPFMFC_BAD_FLAGS",
        ],
        6 => &[
            "OFPGMFC_GROUP_EXISTS",
            "OFPGMFC_INVALID_GROUP",
            "OFPGMFC_WEIGHT_UNSUPPORTED",
            "OFPGMFC_OUT_OF_GROUPS",
            "OFPGMFC_OUT_OF_BUCKETS",
            "OFPGMFC_CHAINING_UNSUPPORTED",
            "OFPGMFC_WATCH_UNSUPPORTED",
            "OFPGMFC_LOOP",
            "OFPGMFC_UNKNOWN_GROUP",
            "OFPGMFC_CHAINED_GROUP",
            "OFPGMFC_BAD_TYPE",
            "OFPGMFC_BAD_COMMAND",
            "OFPGMFC_BAD_BUCKET",
            "OFPGMFC_BAD_WATCH",
            "OFPGMFC_EPERM",
        ],
        17 => &[
            "OFPBFC_UNKNOWN",
            "OFPBFC_EPERM",
            "OFPBFC_BAD_ID",
            "OFPBFC_BUNDLE_EXIST",
            "OFPBFC_BUNDLE_CLOSED",
            "OFPBFC_OUT_OF_BUNDLES",
            "OFPBFC_BAD_TYPE",
            "OFPBFC_BAD_FLAGS",
            "OFPBFC_MSG_BAD_LEN",
            "OFPBFC_MSG_BAD_XID",
            "OFPBFC_MSG_UNSUP",
            "OFPBFC_MSG_CONFLICT",
            "OFPBFC_MSG_TOO_MANY",
            "OFPBFC_MSG_FAILED",
            "OFPBFC_TIMEOUT",
            "OFPBFC_BUNDLE_IN_PROGRESS",
        ],
        _ => return None,
    };
    table.get(usize::from(code)).copied()
}

impl ErrorMsg {
    /// The ONF extension's bundle errors (OpenFlow 1.3) carry the
    /// OpenFlow 1.4 bundle codes plus 2300.
    fn onf_bundle_code(&self) -> Option<u16> {
        match (self.experimenter, self.code) {
            (Some(ONF_EXPERIMENTER), c @ 2300..=2315) => Some(c - 2300),
            _ => None,
        }
    }

    /// The error type (ONF bundle errors of OpenFlow 1.3 are
    /// [`ErrorType::BundleFailed`], as in 1.4+).
    pub fn kind(&self) -> ErrorType {
        use ErrorType::*;
        if self.onf_bundle_code().is_some() {
            return BundleFailed;
        }
        match self.err_type {
            0 => HelloFailed,
            1 => BadRequest,
            2 => BadAction,
            3 => BadInstruction,
            4 => BadMatch,
            5 => FlowModFailed,
            6 => GroupModFailed,
            7 => PortModFailed,
            8 => TableModFailed,
            9 => QueueOpFailed,
            10 => SwitchConfigFailed,
            11 => RoleRequestFailed,
            12 => MeterModFailed,
            13 => TableFeaturesFailed,
            14 => BadProperty,
            15 => AsyncConfigFailed,
            16 => FlowMonitorFailed,
            17 => BundleFailed,
            0xffff => Experimenter,
            x => Other(x),
        }
    }

    /// `OFPET_BAD_MATCH`, ... (or `OFPET_EXPERIMENTER`).
    pub fn type_name(&self) -> String {
        match TYPE_NAMES.get(usize::from(self.err_type)) {
            Some(n) => (*n).to_string(),
            None if self.err_type == 0xffff => "OFPET_EXPERIMENTER".to_string(),
            None => format!("OFPET_{}", self.err_type),
        }
    }

    /// `OFPBMC_BAD_PREREQ`, ... or the number.
    pub fn code_name(&self) -> String {
        if let Some(name) = self
            .onf_bundle_code()
            .and_then(|c| code_name(17, c))
            .and_then(|n| n.strip_prefix("OFPBFC_"))
        {
            return format!("ONFERR_ET_{name}");
        }
        if let Some(e) = self.experimenter {
            let who = match e {
                NX_EXPERIMENTER => "NX".to_string(),
                ONF_EXPERIMENTER => "ONF".to_string(),
                other => format!("{other:#x}"),
            };
            return format!("{who}:{}", self.code);
        }
        code_name(self.err_type, self.code).map_or_else(|| self.code.to_string(), str::to_string)
    }

    /// (version, type, xid) of the failed request, from the error data.
    pub fn failed_header(&self) -> Option<(u8, u8, u32)> {
        let mut r = Reader::new(&self.data, "error data");
        let version = r.u8().ok()?;
        let mtype = r.u8().ok()?;
        r.u16().ok()?;
        let xid = r.u32().ok()?;
        Some((version, mtype, xid))
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let err_type = r.u16()?;
        let code = r.u16()?;
        let experimenter = if err_type == 0xffff {
            Some(r.u32()?)
        } else {
            None
        };
        Ok(ErrorMsg {
            err_type,
            code,
            experimenter,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.err_type);
        out.put_u16(self.code);
        if self.err_type == 0xffff {
            out.put_u32(self.experimenter.unwrap_or(0));
        }
        out.extend_from_slice(&self.data);
    }
}

impl fmt::Display for ErrorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.type_name(), self.code_name())
    }
}

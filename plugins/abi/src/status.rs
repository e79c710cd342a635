//! The int32 status codes of the C ABI (never renumbered, only appended).

/// A status code returned by every ABI function, as defined in `ca_plugin.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum StatusCode {
    /// CA_OK
    Ok = 0,
    /// CA_INVALID_ARGUMENT: malformed input document or NULL pointer.
    InvalidArgument = 1,
    /// CA_CONFIG: configuration rejected.
    Config = 2,
    /// CA_ABI_MISMATCH: ABI major version or layout mismatch.
    AbiMismatch = 3,
    /// CA_UNSUPPORTED: operation or event not supported.
    Unsupported = 4,
    /// CA_STATE: the opaque state is corrupt.
    State = 5,
    /// CA_INTERNAL: a plugin bug.
    Internal = 6,
    /// CA_PANIC: the plugin panicked; the instance is poisoned forever.
    Panic = 7,
    /// CA_SINK: the output was refused by the sink (too big).
    Sink = 8,
    /// CA_NOMEM: out of memory.
    NoMem = 9,
}

impl StatusCode {
    /// The raw code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Parses a raw code; `None` for a code this version does not know.
    pub fn from_code(code: i32) -> Option<StatusCode> {
        Some(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::InvalidArgument,
            2 => StatusCode::Config,
            3 => StatusCode::AbiMismatch,
            4 => StatusCode::Unsupported,
            5 => StatusCode::State,
            6 => StatusCode::Internal,
            7 => StatusCode::Panic,
            8 => StatusCode::Sink,
            9 => StatusCode::NoMem,
            _ => return None,
        })
    }

    /// The C macro name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "CA_OK",
            StatusCode::InvalidArgument => "CA_INVALID_ARGUMENT",
            StatusCode::Config => "CA_CONFIG",
            StatusCode::AbiMismatch => "CA_ABI_MISMATCH",
            StatusCode::Unsupported => "CA_UNSUPPORTED",
            StatusCode::State => "CA_STATE",
            StatusCode::Internal => "CA_INTERNAL",
            StatusCode::Panic => "CA_PANIC",
            StatusCode::Sink => "CA_SINK",
            StatusCode::NoMem => "CA_NOMEM",
        }
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

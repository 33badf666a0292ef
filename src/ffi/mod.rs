//! The C boundary: every `extern "C"` function of libcarbonlite lives under this module.
//!
//! Rules (rustls-ffi's): each function body runs inside [`ffi_boundary!`], which catches
//! panics and turns `Err` into a negative `carbon_error` plus thread-local text for
//! `carbon_last_error()`. NULL pointers and invalid UTF-8 are `CARBON_EINVAL`, never a crash.
//! Out-parameters are written only on success.
#![expect(non_camel_case_types, reason = "C names")]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};

use crate::error::Error;

pub mod carbon;

/// Error codes returned (negated) by every function. Stable: never renumbered or reused.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum carbon_error {
    /// Success.
    CARBON_OK = 0,
    /// An argument is NULL, malformed or out of range.
    CARBON_EINVAL = -1,
    /// No such metric or file.
    CARBON_ENOTFOUND = -2,
    /// An operating-system I/O error.
    CARBON_EIO = -3,
    /// The cache is full (`[cache] max-size`); some points were refused.
    CARBON_EFULL = -4,
    /// A whisper file is corrupt or not a whisper file.
    CARBON_ECORRUPT = -5,
    /// Invalid configuration text or file.
    CARBON_ECONFIG = -6,
    /// The file already exists.
    CARBON_EEXIST = -7,
    /// A timestamp or interval outside what the file covers.
    CARBON_ERANGE = -8,
    /// The handle is closed.
    CARBON_ECLOSED = -9,
    /// The disk (or quota) is full.
    CARBON_ENOSPC = -10,
    /// A plaintext line could not be parsed.
    CARBON_EPARSE = -11,
    /// A metric name was refused (path tricks, policy).
    CARBON_ENAME = -12,
    /// A bug: a panic was caught at the boundary. The handle may still be used.
    CARBON_EPANIC = -99,
}

/// The one place a Rust error becomes a C code.
pub(crate) fn code_of(e: &Error) -> carbon_error {
    use carbon_error::*;
    match e {
        Error::InvalidArgument(_) => CARBON_EINVAL,
        Error::InvalidName { .. } => CARBON_ENAME,
        Error::Parse { .. } => CARBON_EPARSE,
        Error::Config { .. } => CARBON_ECONFIG,
        Error::Corrupt { .. } => CARBON_ECORRUPT,
        Error::AlreadyExists(_) => CARBON_EEXIST,
        Error::NotFound(_) => CARBON_ENOTFOUND,
        Error::TimestampNotCovered(_) | Error::InvalidTimeInterval(_) => CARBON_ERANGE,
        Error::Full { .. } => CARBON_EFULL,
        Error::Closed => CARBON_ECLOSED,
        e if e.is_disk_full() => CARBON_ENOSPC,
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            CARBON_ENOTFOUND
        }
        Error::Io { .. } => CARBON_EIO,
        #[allow(unreachable_patterns)]
        _ => CARBON_EIO,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error (NUL bytes in it are replaced).
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Text of the calling thread's most recent failure ("" if none yet).
///
/// Ownership: the string belongs to the library; it stays valid until the next failing call
/// on the same thread. Never NULL. Thread safety: thread-local, always safe.
#[unsafe(no_mangle)]
pub extern "C" fn carbon_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Static text for a `carbon_error` code (or "unknown error"). Never NULL, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn carbon_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        0 => c"success",
        -1 => c"invalid argument",
        -2 => c"not found",
        -3 => c"I/O error",
        -4 => c"cache full",
        -5 => c"corrupt whisper file",
        -6 => c"invalid configuration",
        -7 => c"already exists",
        -8 => c"timestamp or interval out of range",
        -9 => c"handle closed",
        -10 => c"no space left on device",
        -11 => c"malformed line",
        -12 => c"invalid metric name",
        -99 => c"internal error (panic caught)",
        _ => c"unknown error",
    };
    s.as_ptr()
}

/// The library version, e.g. "0.1.0". Static, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn carbon_version() -> *const c_char {
    static V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    V.as_ptr()
}

/// What a boundary function returns when it fails: its error value.
pub(crate) trait FfiReturn {
    fn from_error(code: carbon_error) -> Self;
}

impl FfiReturn for i32 {
    fn from_error(code: carbon_error) -> Self {
        code as i32
    }
}

impl FfiReturn for i64 {
    fn from_error(code: carbon_error) -> Self {
        code as i64
    }
}

impl<T> FfiReturn for *mut T {
    fn from_error(_: carbon_error) -> Self {
        std::ptr::null_mut()
    }
}

impl FfiReturn for () {
    fn from_error(_: carbon_error) -> Self {}
}

/// Runs `$body` (a block evaluating to `Result<$ret, Error>`) with panics caught; failures
/// set the last error and return the type's error value.
macro_rules! ffi_boundary {
    ($ret:ty, $body:block) => {{
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<$ret, $crate::error::Error> { $body },
        ));
        match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                $crate::ffi::set_last_error(&e.to_string());
                <$ret as $crate::ffi::FfiReturn>::from_error($crate::ffi::code_of(&e))
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                $crate::ffi::set_last_error(&format!("internal error (panic): {what}"));
                <$ret as $crate::ffi::FfiReturn>::from_error(
                    $crate::ffi::carbon_error::CARBON_EPANIC,
                )
            }
        }
    }};
}
pub(crate) use ffi_boundary;

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Borrows a `(pointer, length)` byte buffer; NULL is allowed only with length 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes valid for the call.
pub(crate) unsafe fn bytes<'a>(
    p: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Error> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Error::invalid(format!("{what} is NULL")))
        };
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("{what} length {len} is too large")));
    }
    // SAFETY: non-NULL and `len` readable bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: carbon_last_error never returns NULL and the text lives until the next failure.
        unsafe { CStr::from_ptr(carbon_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn boundary_catches_panics_and_errors() {
        let r: i32 = ffi_boundary!(i32, { Err(Error::NotFound("x".into())) });
        assert_eq!(r, carbon_error::CARBON_ENOTFOUND as i32);
        assert!(last().contains("not found: x"));
        let r: i32 = ffi_boundary!(i32, {
            if r < 0 {
                panic!("boom");
            }
            Ok(1)
        });
        assert_eq!(r, carbon_error::CARBON_EPANIC as i32);
        assert!(last().contains("boom"));
        let p: *mut u8 = ffi_boundary!(*mut u8, { Err(Error::Closed) });
        assert!(p.is_null());
    }

    #[test]
    fn strerror_covers_every_code() {
        for code in [0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -99] {
            // SAFETY: static NUL-terminated strings.
            let s = unsafe { CStr::from_ptr(carbon_strerror(code)) };
            assert_ne!(s.to_str().unwrap(), "unknown error", "{code}");
        }
        // SAFETY: as above.
        let v = unsafe { CStr::from_ptr(carbon_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}

//! EAL lifetime, thread registration and clocks.
//!
//! DPDK's EAL initialises once per process and cannot be re-initialised after
//! `rte_eal_cleanup`; [`Eal::init`] enforces "once" with a process-wide flag so a
//! second call is a typed error rather than DPDK's log line. Worker threads must be
//! registered ([`register_thread`]) so they get an lcore id and with it the mempool
//! per-lcore caches (the design measured ~20 % more throughput with them).

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{neg_errno, rte_errno, strerror, DpdkError};
use crate::ffi;

/// Set by the first `Eal::init` call, never cleared: EAL initialises once per process.
static INIT_CALLED: AtomicBool = AtomicBool::new(false);
/// Set once `rte_eal_init` succeeded; cleared by `Eal::cleanup`.
static EAL_READY: AtomicBool = AtomicBool::new(false);

/// `Err(EalNotInitialized)` unless the EAL is up.
pub(crate) fn ensure_ready() -> Result<(), DpdkError> {
    if EAL_READY.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(DpdkError::EalNotInitialized)
    }
}

/// Proof that DPDK's EAL is initialised in this process.
///
/// Dropping it does nothing (DPDK objects may outlive it, and the EAL cannot be
/// re-initialised anyway); call [`Eal::cleanup`] at orderly shutdown, after every
/// port is closed.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (`args[0]` is the program name, as for
    /// `rte_eal_init`'s `argv`). Start tokio and other thread pools before this: EAL
    /// pins the calling thread.
    ///
    /// # Errors
    /// [`DpdkError::EalAlreadyInitialized`] on any call after the first (even if the
    /// first failed: DPDK does not support a retry), [`DpdkError::NulByte`] for an
    /// argument with a NUL, [`DpdkError::EalInit`] with `rte_errno` if DPDK refuses.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let owned = args
            .iter()
            .map(|a| {
                CString::new(a.as_str()).map_err(|_| DpdkError::NulByte {
                    what: "EAL argument",
                    value: a.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if INIT_CALLED.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        // EAL keeps `argv` pointers around (it permutes argv and some options keep
        // the strings): leak them, once per process.
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = i32::try_from(argv.len() - 1).unwrap_or(i32::MAX);
        // SAFETY: argv is a NULL-terminated array of `argc` valid, NUL-terminated,
        // leaked (so 'static) C strings; INIT_CALLED guarantees one call per process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let code = rte_errno();
            return Err(DpdkError::EalInit {
                code,
                msg: strerror(code),
            });
        }
        EAL_READY.store(true, Ordering::Release);
        Ok(Eal { _private: () })
    }

    /// Releases EAL resources (`rte_eal_cleanup`). Close every port first; the EAL
    /// cannot be initialised again in this process.
    ///
    /// # Errors
    /// [`DpdkError::EalCleanup`] if DPDK reports a failure.
    pub fn cleanup(self) -> Result<(), DpdkError> {
        EAL_READY.store(false, Ordering::Release);
        // SAFETY: the EAL is initialised (we hold the proof) and no pmd-shims call
        // can start after EAL_READY is cleared.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            let (code, msg) = neg_errno(ret);
            return Err(DpdkError::EalCleanup { code, msg });
        }
        Ok(())
    }
}

/// Registration of the current thread with DPDK; unregisters on drop.
///
/// `!Send`: it must be dropped on the thread it registered.
#[derive(Debug)]
pub struct ThreadRegistration {
    /// False when the thread already had an lcore id (an EAL lcore such as the main
    /// thread): then there is nothing to undo.
    registered: bool,
    _not_send: PhantomData<*const ()>,
}

impl ThreadRegistration {
    /// The lcore id DPDK gave this thread.
    pub fn lcore_id(&self) -> u32 {
        lcore_id()
    }
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: this thread registered itself (the guard is !Send so we are on
            // that thread) and has not unregistered since.
            unsafe { dpdk_sys::rte_thread_unregister() };
        }
    }
}

/// Registers the calling thread with DPDK (`rte_thread_register`) so it gets an
/// lcore id and uses the mempool per-lcore caches. A thread that already has an
/// lcore id (the EAL main thread) gets a guard that does nothing.
///
/// # Errors
/// [`DpdkError::EalNotInitialized`] before `Eal::init`; [`DpdkError::ThreadRegister`]
/// when DPDK refuses (e.g. no free lcore id).
pub fn register_thread() -> Result<ThreadRegistration, DpdkError> {
    ensure_ready()?;
    if lcore_id() != dpdk_sys::LCORE_ID_ANY {
        return Ok(ThreadRegistration {
            registered: false,
            _not_send: PhantomData,
        });
    }
    // SAFETY: the EAL is initialised; registering a thread without an lcore id is the
    // documented use.
    let ret = unsafe { dpdk_sys::rte_thread_register() };
    if ret < 0 {
        let code = rte_errno();
        return Err(DpdkError::ThreadRegister {
            code,
            msg: strerror(code),
        });
    }
    Ok(ThreadRegistration {
        registered: true,
        _not_send: PhantomData,
    })
}

/// This thread's lcore id, `u32::MAX` (`LCORE_ID_ANY`) for an unregistered thread.
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local; valid before and after EAL init.
    unsafe { ffi::shim_rte_lcore_id() }
}

/// TSC ticks per second, as measured by EAL at init (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; no preconditions.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// The CPU time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: executes rdtsc; no preconditions.
    unsafe { ffi::shim_rte_rdtsc() }
}

/// DPDK's version string, e.g. `"DPDK 22.11.4"`.
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

//! The host's TSC frequency, measured with `rdtsc`.
//!
//! Under TCG, QEMU's guest TSC is the host TSC, so the emulated backend tells the guest kernel
//! its frequency (`tsc_early_khz=`): its own calibration against the PIT fails at random under
//! TCG, and without a TSC frequency the kernel hangs calibrating the local APIC timer.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Measures the TSC against the monotonic clock for `window`; kHz, or `None` where there is no
/// TSC.
pub fn measure_khz(window: Duration) -> Option<u64> {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(window);
    let (c1, t1) = (rdtsc(), Instant::now());
    let nanos = t1.duration_since(t0).as_nanos() as u64;
    if c1 <= c0 || nanos == 0 {
        return None;
    }
    Some(((c1 - c0) as u128 * 1_000_000 / nanos as u128) as u64)
}

/// The host TSC frequency in kHz: the best of three short measurements (the one with the
/// shortest window overrun), or `None`.
pub fn host_tsc_khz() -> Option<u64> {
    let mut samples: Vec<u64> = (0..3)
        .filter_map(|_| measure_khz(Duration::from_millis(40)))
        .collect();
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

//! Shared by the fuzz targets: a counting allocator, so a target can check
//! that decoding N bytes of hostile input never holds more than a fixed
//! multiple of N bytes at once (the "no unbounded allocation" property,
//! checked on every input rather than left to an RSS limit).

// The node agent's CNI protocol, as data: the request and result parsing
// both the shim and the daemon run (`cni`), and the shim-to-daemon messages
// (`protocol`). Both are pure and depend on nothing else of the node agent,
// so they are compiled here from their own source files, as they are in
// `switchyard-node`, without the Kubernetes client that package brings.
#[path = "../../node-agent/src/cni.rs"]
pub mod cni;
#[path = "../../node-agent/src/protocol.rs"]
pub mod protocol;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes held and their high-water mark.
pub struct Counting;

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    CURRENT.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result and the most bytes held at once while it
/// ran, beyond what was held when it started.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (r, peak)
}

/// Panics (a finding) when `peak` exceeds `per_byte` bytes per input byte
/// plus `fixed`.
pub fn check_bound(what: &str, input_len: usize, peak: usize, per_byte: usize, fixed: usize) {
    let bound = input_len.saturating_mul(per_byte).saturating_add(fixed);
    assert!(
        peak <= bound,
        "{what}: {input_len} input bytes held {peak} bytes at once (bound {per_byte}/byte + {fixed})"
    );
}

/// Runs `f` on `data` and checks the allocation bound.
pub fn bounded<R>(
    what: &str,
    data: &[u8],
    per_byte: usize,
    fixed: usize,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let (r, peak) = peak_during(|| f(data));
    check_bound(what, data.len(), peak, per_byte, fixed);
    r
}

/// Splits `data` at the first NUL: (before, after). Targets that take two
/// inputs (environment and stdin, say) use it.
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

//! Heap bytes per idle stream, measured with a counting allocator. Prints the
//! figure; asserts a generous ceiling so a regression that copies the whole
//! streamtype into every stream again is caught.

use ss_core::policy::{MetadataDecl, Policy, StreamType};
use ss_core::{Engine, EngineConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn heap_bytes_per_idle_stream() {
    let st = StreamType {
        name: "telemetry".into(),
        endpoint: Some("${region}.example.com".into()),
        port: 443,
        metadata: vec![
            MetadataDecl {
                name: "region".into(),
                header: None,
            },
            MetadataDecl {
                name: "ctype".into(),
                header: Some("content-type:".into()),
            },
        ],
        ..Default::default()
    };
    let policy = Policy {
        streamtypes: vec![st],
        ..Default::default()
    };
    let mut e = Engine::new(policy, EngineConfig::default());
    let now = Instant::now();
    const N: usize = 10_000;
    // Warm up so one-off allocations don't count.
    let _first = e.create(now, "telemetry").unwrap();
    while e.poll_event().is_some() {}
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..N {
        e.create(now, "telemetry").unwrap();
        while e.poll_event().is_some() {}
    }
    let per = (LIVE.load(Ordering::Relaxed) - before) as f64 / N as f64;
    println!("heap bytes per idle stream: {per:.0}");
    assert!(per < 1024.0, "{per} bytes per idle stream");
}

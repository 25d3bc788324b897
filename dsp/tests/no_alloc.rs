//! `Engine::process` never allocates: a counting global allocator around the system one
//! counts allocations on this thread while `process` runs, for every block size and with bad
//! input, settings changes and meter reads in between.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use stembus_dsp::MAX_STEMS;
use stembus_dsp::engine::{Engine, StereoIn};
use stembus_dsp::settings::{EngineSettings, MainInputRole, MonitorSource};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: thread-locals may be gone during thread teardown.
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                COUNT.with(|n| n.set(n.get() + 1));
            }
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                COUNT.with(|n| n.set(n.get() + 1));
            }
        });
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                COUNT.with(|n| n.set(n.get() + 1));
            }
        });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocator calls it made on this thread.
fn count_allocs(f: impl FnOnce()) -> usize {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(|n| n.get())
}

#[test]
fn process_never_allocates() {
    let frames = 4096;
    let stems: Vec<[Vec<f32>; 2]> = (0..MAX_STEMS)
        .map(|s| {
            let ch = |c: usize| -> Vec<f32> {
                (0..frames)
                    .map(|n| {
                        let x = 0.6 * ((s + 1 + c) as f32 * 0.01 * n as f32).sin();
                        match n % 997 {
                            0 => f32::NAN,
                            1 => f32::INFINITY,
                            2 => 1.0e-42,
                            _ => x,
                        }
                    })
                    .collect()
            };
            [ch(0), ch(1)]
        })
        .collect();
    let main = stems[0].clone();
    let mut out = [vec![0.0; frames], vec![0.0; frames]];

    // Every module on, the limiter working, the reference path monitored.
    let mut settings = EngineSettings::default();
    settings.master.drive_db = 12.0;
    settings.main_input = MainInputRole::ReferenceTrack;
    for s in &mut settings.stems {
        s.eq.hpf_enabled = true;
        s.eq.bell1.enabled = true;
        s.eq.bell1.gain_db = 4.0;
        s.dyn_eq.enabled = true;
        s.comp.enabled = true;
        s.sat.enabled = true;
        s.stereo.mono_bass = true;
        s.stereo.width = 1.3;
    }
    settings.master.glue.enabled = true;
    settings.master.eq.tilt_db = 1.0;

    let mut engine = Engine::new(48_000.0, 4096, MAX_STEMS);
    let meters = engine.meters().clone();
    for (round, block) in [1usize, 7, 64, 512, 4096].into_iter().enumerate() {
        settings.master.drive_db = 6.0 + round as f32;
        settings.stems[round].mute = !settings.stems[round].mute;
        settings.monitor.source = if round % 2 == 0 {
            MonitorSource::Reference
        } else {
            MonitorSource::Unprocessed
        };
        let n = count_allocs(|| {
            engine.set_settings(&settings);
            let mut start = 0;
            while start < frames {
                let len = block.min(frames - start);
                let ins: [Option<StereoIn>; MAX_STEMS] = std::array::from_fn(|i| {
                    Some([
                        &stems[i][0][start..start + len],
                        &stems[i][1][start..start + len],
                    ])
                });
                let m = Some([&main[0][start..start + len], &main[1][start..start + len]]);
                let [ol, or] = &mut out;
                engine.process(
                    &ins,
                    m,
                    &mut ol[start..start + len],
                    &mut or[start..start + len],
                );
                start += len;
            }
            meters.request_reset();
        });
        assert_eq!(n, 0, "{n} allocations with block size {block}");
        assert!(out.iter().flatten().all(|x| x.is_finite()));
        // The reader side (GUI thread) may allocate; it is not the audio thread.
        let _ = meters.master.read();
    }
}

#[test]
fn the_counter_sees_allocations() {
    let n = count_allocs(|| {
        let v = std::hint::black_box(vec![1u8; 16]);
        drop(v);
    });
    assert_eq!(n, 2);
}

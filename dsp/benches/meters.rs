//! Meter throughput at 48 kHz as the engine drives them: `process` per 128-frame chunk (the
//! engine's `CHUNK`), `publish` after every 512-frame host block, one second of audio per
//! iteration. Throughput is in frames: **ns per frame = 1000 ÷ (Melem/s)** (a frame is one
//! stereo sample of every signal metered).
//!
//! As in the `filters` bench, each criterion sample reports the **fastest** of its iterations
//! (times the iteration count): the machine is shared, and the minimum is what the code costs
//! when it has the core. Each chunk of the signals a case meters (the input is far larger than
//! the caches) is first copied into one small scratch chunk, as the engine's stem scratch is
//! (hot in cache); `copy_only` measures that copy for all 11 signals, to subtract.
//!
//! Measured (ns per frame, copy included, two runs alternating with the code before the
//! bank; AMD EPYC with AVX2, 2 cores shared with builds, so ±15 %):
//!
//! | case                  | engine material | music   | loud    |
//! | --------------------- | --------------- | ------- | ------- |
//! | before: one set       | 10–12           | 10–11   | 11–12   |
//! | before: eleven sets   | 137–141         | 121–127 | 131–132 |
//! | one set               | 4.5             | 4.2–4.4 | 6.2–6.6 |
//! | bank (8 stems)        | 26–30           | 17.5–19 | 37–38   |
//! | bank + 3 sets (now)   | 45–47           | 34–37   | 57–62   |
//! | bank + bank of 3      | 40–41           | 27–33   | 49–53   |
//!
//! - `meters/copy_only`: the copy of every chunk (11 signals), nothing metered.
//! - `meters/one_set`: one `MeterSet` (the master signal: a limited stem sum).
//! - `meters/eleven_sets`: 8 stems + master + unprocessed sum + main input, one `MeterSet`
//!   each (the engine before the stem bank).
//! - `meters/bank_plus_3_sets`: the 8 stems in one `StemMeterBank`, plus 3 `MeterSet`s (what
//!   the engine runs now).
//! - `meters/bank`: the `StemMeterBank` alone (8 stems).
//! - `meters/bank_of_3`: master, unprocessed sum and main input in one bank of 3 (what the
//!   engine runs for its buses).
//! - `meters/bank_plus_bank_of_3`: the 8 stems in one bank and master, unprocessed sum and main
//!   input in a second bank of 3 (an option for the engine: all three are ready together at
//!   the end of a chunk, before the monitor mix).
//! - `*_music`: every stem a music-like signal (a few harmonics of its own note, struck on a
//!   beat and decaying, over brown noise and a little white noise): spectra falling with
//!   frequency like real stems, where the true-peak bound test skips most sub-blocks.
//! - `*_loud`: every stem a dense, limited white noise (the worst case: the true-peak FIR
//!   runs for nearly every sub-block).
//!
//! The default material (no suffix) is the engine bench's: a low sine with −12 dB of white
//! noise on every stem.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stembus_dsp::MAX_STEMS;
use stembus_dsp::meter_bank::StemMeterBank;
use stembus_dsp::meters::{MeterSet, PublishedMeters};

const SAMPLE_RATE: f32 = 48_000.0;
/// The engine's internal chunk size.
const CHUNK: usize = 128;
/// Host block: publish after this many frames.
const BLOCK: usize = 512;
/// One second of audio per iteration.
const FRAMES: usize = 48_000;

/// One chunk of every signal: 8 stems, then master, unprocessed sum, main input.
type Chunk = [[[f32; CHUNK]; 2]; MAX_STEMS + 3];

/// Test material: what the stems carry.
#[derive(Clone, Copy, PartialEq)]
enum Material {
    /// The engine bench's stems: a sine and white noise, slow on/off envelope.
    Engine,
    /// Harmonics of a note struck on a beat, over brown and a little white noise.
    Music,
    /// Dense limited white noise.
    Loud,
}

/// The stems of `material`; master = limited sum, unprocessed = sum, main = stem 0.
fn signals(material: Material) -> Vec<Chunk> {
    let mut seed = 0x1234_5678u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut out = vec![[[[0.0f32; CHUNK]; 2]; MAX_STEMS + 3]; FRAMES / CHUNK + 1];
    let mut brown = [[0.0f32; 2]; MAX_STEMS];
    for n in 0..FRAMES {
        let (k, i) = (n / CHUNK, n % CHUNK);
        let mut sum = [0.0f32; 2];
        for s in 0..MAX_STEMS {
            for (c, acc) in sum.iter_mut().enumerate() {
                let t = n as f32 / SAMPLE_RATE;
                let x = match material {
                    Material::Loud => (1.8 * noise()).clamp(-0.7, 0.7),
                    Material::Engine => {
                        let f = 40.0 * (s + 1) as f32 + 3.0 * c as f32;
                        let env = if (n / 6000) % 2 == 0 { 1.0 } else { 0.3 };
                        env * (0.2 * (std::f32::consts::TAU * f * t).sin() + 0.05 * noise())
                    }
                    Material::Music => {
                        let f0 = 55.0 * 2f32.powf(s as f32 / 2.0) * (1.0 + 0.002 * c as f32);
                        let beat = (t + 0.07 * s as f32) % 0.5;
                        let env = (1.0 - (-beat / 0.005).exp()) * (-beat / 0.15).exp();
                        let tone: f32 = (1..=5)
                            .map(|h| (std::f32::consts::TAU * f0 * h as f32 * t).sin() / h as f32)
                            .sum();
                        let w = noise();
                        brown[s][c] = 0.995 * brown[s][c] + 0.02 * w;
                        0.2 * env * tone + brown[s][c] + 0.003 * w
                    }
                };
                out[k][s][c][i] = x;
                *acc += x;
            }
        }
        for c in 0..2 {
            out[k][MAX_STEMS][c][i] = (0.4 * sum[c]).clamp(-0.95, 0.95);
            out[k][MAX_STEMS + 1][c][i] = 0.4 * sum[c];
            out[k][MAX_STEMS + 2][c][i] = out[k][0][c][i];
        }
    }
    out.truncate(FRAMES / CHUNK);
    out
}

/// Runs `process(chunk)` for every chunk of one second (the signals `used` copied into a
/// scratch chunk first) and `publish()` every `BLOCK` frames.
fn bench(
    c: &mut Criterion,
    name: &str,
    input: &[Chunk],
    used: std::ops::Range<usize>,
    mut process: impl FnMut(&Chunk),
    mut publish: impl FnMut(),
) {
    let mut group = c.benchmark_group("meters");
    group.throughput(Throughput::Elements((input.len() * CHUNK) as u64));
    group.sample_size(20);
    let mut scratch: Box<Chunk> = Box::new([[[0.0; CHUNK]; 2]; MAX_STEMS + 3]);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut best = Duration::MAX;
            for _ in 0..iters {
                let start = Instant::now();
                for (k, chunk) in input.iter().enumerate() {
                    scratch[used.clone()].copy_from_slice(&chunk[used.clone()]);
                    process(std::hint::black_box(&scratch));
                    if (k + 1) % (BLOCK / CHUNK) == 0 {
                        publish();
                    }
                }
                best = best.min(start.elapsed());
            }
            best * iters as u32
        })
    });
    group.finish();
}

fn bench_meters(c: &mut Criterion) {
    for (suffix, material) in [
        ("", Material::Engine),
        ("_music", Material::Music),
        ("_loud", Material::Loud),
    ] {
        let x = signals(material);
        let out: Vec<PublishedMeters> = (0..MAX_STEMS + 3)
            .map(|_| PublishedMeters::default())
            .collect();

        let all = 0..MAX_STEMS + 3;
        bench(
            c,
            &format!("copy_only{suffix}"),
            &x,
            all.clone(),
            |_| {},
            || {},
        );

        let one = std::cell::RefCell::new(MeterSet::new(SAMPLE_RATE));
        bench(
            c,
            &format!("one_set{suffix}"),
            &x,
            MAX_STEMS..MAX_STEMS + 1,
            |ch| {
                one.borrow_mut()
                    .process(&ch[MAX_STEMS][0], &ch[MAX_STEMS][1])
            },
            || one.borrow_mut().publish(&out[0]),
        );

        let mut sets: Vec<MeterSet> = (0..MAX_STEMS + 3)
            .map(|_| MeterSet::new(SAMPLE_RATE))
            .collect();
        let sets = std::cell::RefCell::new(&mut sets);
        bench(
            c,
            &format!("eleven_sets{suffix}"),
            &x,
            all.clone(),
            |ch| {
                for (m, s) in sets.borrow_mut().iter_mut().zip(ch) {
                    m.process(&s[0], &s[1]);
                }
            },
            || {
                for (m, o) in sets.borrow_mut().iter_mut().zip(&out) {
                    m.publish(o);
                }
            },
        );

        let bank = std::cell::RefCell::new(StemMeterBank::new(SAMPLE_RATE, MAX_STEMS));
        let mut three: Vec<MeterSet> = (0..3).map(|_| MeterSet::new(SAMPLE_RATE)).collect();
        let three = std::cell::RefCell::new(&mut three);
        bench(
            c,
            &format!("bank_plus_3_sets{suffix}"),
            &x,
            all.clone(),
            |ch| {
                let stems: [[&[f32]; 2]; MAX_STEMS] =
                    std::array::from_fn(|s| [&ch[s][0][..], &ch[s][1][..]]);
                bank.borrow_mut().process(&stems);
                for (m, s) in three.borrow_mut().iter_mut().zip(&ch[MAX_STEMS..]) {
                    m.process(&s[0], &s[1]);
                }
            },
            || {
                bank.borrow_mut().publish(&out[..MAX_STEMS]);
                for (m, o) in three.borrow_mut().iter_mut().zip(&out[MAX_STEMS..]) {
                    m.publish(o);
                }
            },
        );

        bench(
            c,
            &format!("bank{suffix}"),
            &x,
            0..MAX_STEMS,
            |ch| {
                let stems: [[&[f32]; 2]; MAX_STEMS] =
                    std::array::from_fn(|s| [&ch[s][0][..], &ch[s][1][..]]);
                bank.borrow_mut().process(&stems);
            },
            || bank.borrow_mut().publish(&out[..MAX_STEMS]),
        );

        let buses = std::cell::RefCell::new(StemMeterBank::new(SAMPLE_RATE, 3));
        bench(
            c,
            &format!("bank_of_3{suffix}"),
            &x,
            MAX_STEMS..MAX_STEMS + 3,
            |ch| {
                let buses_in: [[&[f32]; 2]; 3] =
                    std::array::from_fn(|s| [&ch[MAX_STEMS + s][0][..], &ch[MAX_STEMS + s][1][..]]);
                buses.borrow_mut().process(&buses_in);
            },
            || buses.borrow_mut().publish(&out[MAX_STEMS..]),
        );

        bench(
            c,
            &format!("bank_plus_bank_of_3{suffix}"),
            &x,
            all.clone(),
            |ch| {
                let stems: [[&[f32]; 2]; MAX_STEMS + 3] =
                    std::array::from_fn(|s| [&ch[s][0][..], &ch[s][1][..]]);
                bank.borrow_mut().process(&stems[..MAX_STEMS]);
                buses.borrow_mut().process(&stems[MAX_STEMS..]);
            },
            || {
                bank.borrow_mut().publish(&out[..MAX_STEMS]);
                buses.borrow_mut().publish(&out[MAX_STEMS..]);
            },
        );
    }
}

criterion_group!(benches, bench_meters);
criterion_main!(benches);

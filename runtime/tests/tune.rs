//! The tuning cache and selection: written atomically and read back, ignored (with a
//! warning) when foreign or corrupt; the fastest median wins under a deterministic clock;
//! a real (small) tuning run on the CPU picks a candidate that is then in use.

use std::time::Duration;

use uniaudio_runtime::cpu::tune as cpu_tune;
use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::tune::{pick, Choice, DeviceKey, TuneCache};

fn key() -> DeviceKey {
    DeviceKey::new("cpu", "Test CPU 9000", "avx512, 2 threads")
}

fn choice(c: &str) -> Choice {
    Choice { candidate: c.into(), medians_us: [("1".to_string(), 2.0), (c.to_string(), 1.0)].into_iter().collect() }
}

#[test]
fn the_cache_round_trips_and_refuses_foreign_or_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut warnings = Vec::new();
    let mut cache = TuneCache::open(dir.path(), key(), &mut |w| warnings.push(w));
    assert!(cache.is_empty() && warnings.is_empty(), "no file is not an error");
    cache.insert("cpu.gemm.pass_bytes/k<=2048", choice("8388608"));
    cache.save().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec![key().file_name()], "one file, no temporary left");

    let back = TuneCache::open(dir.path(), key(), &mut |w| warnings.push(w));
    assert_eq!(back.get("cpu.gemm.pass_bytes/k<=2048"), Some(&choice("8388608")));
    assert!(warnings.is_empty());

    // Another device or version names another file: nothing carries over.
    let mut other = key();
    other.runtime = "0.0.1".into();
    assert_ne!(other.file_name(), key().file_name());
    assert!(TuneCache::open(dir.path(), other.clone(), &mut |w| warnings.push(w)).is_empty());
    // A file under this key's name written for another key is ignored with a warning.
    let path = dir.path().join(key().file_name());
    let text = std::fs::read_to_string(&path).unwrap().replace("Test CPU 9000", "Other GPU");
    std::fs::write(&path, text).unwrap();
    assert!(TuneCache::open(dir.path(), key(), &mut |w| warnings.push(w)).is_empty());
    assert!(warnings.pop().unwrap().contains("another device"));
    // Corrupt, truncated or other-version files: ignored with a warning, never a panic.
    for bad in ["{not json", "", "{\"format\": \"uniaudio-tune\", \"version\": 7, \"key\": null, \"choices\": {}}"] {
        std::fs::write(&path, bad).unwrap();
        assert!(TuneCache::open(dir.path(), key(), &mut |w| warnings.push(w)).is_empty());
        assert!(warnings.pop().is_some(), "a warning for {bad:?}");
    }
    // A rewrite replaces the corrupt file.
    cache.save().unwrap();
    assert!(!TuneCache::open(dir.path(), key(), &mut |w| warnings.push(w)).is_empty());
}

#[test]
fn the_lowest_median_wins_under_an_injected_clock() {
    // Per candidate, the times its runs report (warm-up first): medians 5, 3, 3, 4 ms.
    let script: [&[u64]; 4] = [&[90, 5, 1, 9], &[1, 3, 99, 2], &[50, 3, 3, 3], &[0, 4, 4, 4]];
    let mut calls = [0usize; 4];
    let (best, timings) = pick(&[0usize, 1, 2, 3], |c| format!("c{c}"), 1, 3, |&c| {
        let ms = script[c][calls[c]];
        calls[c] += 1;
        Duration::from_millis(ms)
    });
    assert_eq!(calls, [4; 4], "one warm-up and three timed runs each");
    let medians: Vec<u64> = timings.iter().map(|t| t.median.as_millis() as u64).collect();
    assert_eq!(medians, vec![5, 3, 3, 4]);
    assert_eq!(best, 1, "the first of equal medians");
    assert_eq!(timings[1].candidate, "c1");
}

#[test]
fn a_real_cpu_tuning_run_picks_a_candidate_and_uses_it() {
    let isa = Isa::detect();
    let (best, timings) = cpu_tune::tune_gemm_pass(isa, 0, Some((200, 512, 64)), 0, 1);
    assert_eq!(timings.len(), cpu_tune::GEMM_PASS_CANDIDATES.len());
    assert!(timings.iter().all(|t| t.median > Duration::ZERO));
    assert_eq!(cpu_tune::gemm_pass_bytes(512), cpu_tune::GEMM_PASS_CANDIDATES[best]);
    let dir = tempfile::tempdir().unwrap();
    let mut cache = TuneCache::open(dir.path(), cpu_tune::device_key(), &mut |w| panic!("{w}"));
    cache.insert(&format!("{}/{}", cpu_tune::GEMM_PASS, cpu_tune::GEMM_CLASSES[0].name), cpu_tune::choice(best, &timings));
    cpu_tune::use_defaults();
    assert_eq!(cpu_tune::apply(&cache), 1);
    assert_eq!(cpu_tune::gemm_pass_bytes(512), cpu_tune::GEMM_PASS_CANDIDATES[best]);
    // The GEMV family: every candidate timed, the winner in use.
    let (best, timings) = cpu_tune::tune_gemv_tasks(isa, 1, Some((256, 5000)), 0, 1);
    assert_eq!(timings.len(), cpu_tune::GEMV_TASKS_CANDIDATES.len());
    assert_eq!(cpu_tune::gemv_tasks_per_thread(5000), cpu_tune::GEMV_TASKS_CANDIDATES[best]);
    // The 8-bit GEMV's prefetch distance, at a level with 8-bit products.
    if Isa::Avx2Int8.available() {
        let (best, timings) = cpu_tune::tune_q8_prefetch(Isa::Avx2Int8, Some((256, 512)), 0, 1);
        assert_eq!(timings.len(), cpu_tune::Q8_PREFETCH_CANDIDATES.len());
        assert_eq!(cpu_tune::q8_prefetch_bytes(), cpu_tune::Q8_PREFETCH_CANDIDATES[best]);
    } else {
        println!("SKIPPED the cpu.q8.prefetch_bytes run: this CPU lacks AVX2");
    }
    cpu_tune::use_defaults();
}

//! 2 MiB pages for the memory a decode step streams. With 4 KiB pages, reading 10 GB of
//! weights per step walks millions of page-table entries and every hardware prefetch
//! stream stops at each page's end; on Linux, large allocations and the mapped weight files
//! ask for transparent huge pages (`MADV_HUGEPAGE`), a hint the kernel may decline.

/// The huge page size asked for (x86-64 and most arm64 kernels).
pub const SIZE: usize = 2 << 20;

/// Allocations from this size on are aligned to `SIZE` and advised: smaller ones would
/// round up to a whole huge page for little gain.
pub const MIN_BYTES: usize = 4 << 20;

/// Asks for huge pages over `len` bytes from `ptr` (before they are first touched, so
/// the first fault can take a whole huge page). A hint: errors are ignored.
pub(crate) fn advise(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: madvise only changes how the kernel backs the range; MADV_HUGEPAGE never
    // alters its contents, and a range outside a mapping is an error, not a fault.
    unsafe {
        libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Asks for huge pages over a mapped file. The kernel maps 2 MiB of a file at once where
/// its page cache holds them as one 2 MiB folio, which filesystems with large folios
/// (recent ext4 and XFS, tmpfs mounted `huge=`) do for data read in after this hint; a file
/// already cached in smaller pages keeps those until they are evicted.
pub(crate) fn advise_map(map: &memmap2::Mmap) {
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}

/// How a set of mapped files is resident: bytes in memory, and of those, bytes mapped in
/// 2 MiB pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidentPages {
    pub resident: u64,
    pub huge: u64,
}

/// The resident and 2 MiB-mapped bytes of this process's mappings of `.safetensors` files
/// (the model weights, replaced on disk or not), from `/proc/self/smaps`; `None` where that
/// cannot be read.
pub fn mapped_weight_pages() -> Option<ResidentPages> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    Some(parse_smaps(&smaps, is_weight_file))
}

/// Whether a mapping's path is a weight file (smaps marks a file replaced on disk since it
/// was mapped " (deleted)").
fn is_weight_file(path: &str) -> bool {
    path.trim_end_matches(" (deleted)").ends_with(".safetensors")
}

/// Sums `Rss` and the PMD-mapped bytes (`FilePmdMapped`, or `ShmemPmdMapped` for files on
/// tmpfs) over the mappings of files whose path `wanted` accepts.
fn parse_smaps(smaps: &str, wanted: impl Fn(&str) -> bool) -> ResidentPages {
    let mut pages = ResidentPages::default();
    let mut counting = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if !first.ends_with(':') {
            counting = mapping_path(line).is_some_and(&wanted);
            continue;
        }
        if !counting {
            continue;
        }
        let bytes = fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0).saturating_mul(1024);
        match first {
            "Rss:" => pages.resident = pages.resident.saturating_add(bytes),
            "FilePmdMapped:" | "ShmemPmdMapped:" => pages.huge = pages.huge.saturating_add(bytes),
            _ => {}
        }
    }
    pages
}

/// The path of a mapping's header line, "start-end perms offset dev inode [path]" (a path
/// may hold spaces).
fn mapping_path(header: &str) -> Option<&str> {
    let mut rest = header;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace)?..];
    }
    Some(rest.trim()).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0280000000 r--s 00000000 fe:01 1234                       /models/lm/model.safetensors
Size:           10485760 kB
Rss:             8306780 kB
FilePmdMapped:    978944 kB
ShmemPmdMapped:        0 kB
THPeligible:    1
ProtectionKey:         0
VmFlags: rd sh mr mw me ms hg
7f0280000000-7f0290000000 rw-p 00000000 00:00 0
Rss:               65536 kB
AnonHugePages:     65536 kB
55d000000000-55d000100000 r-xp 00001000 fe:01 99                         /usr/bin/uniaudio
Rss:                1024 kB
FilePmdMapped:      2048 kB
7f0300000000-7f0300400000 r--s 00000000 fe:01 1235                       /my models/codec.safetensors
Rss:                4096 kB
FilePmdMapped:      4096 kB
7f0400000000-7f0400400000 r--s 00000000 00:1a 77                         /dev/shm/old.safetensors (deleted)
Rss:                2048 kB
ShmemPmdMapped:     2048 kB
";

    #[test]
    fn smaps_sums_only_the_weight_files() {
        let pages = parse_smaps(SMAPS, |p| p.ends_with(".safetensors"));
        assert_eq!(pages, ResidentPages { resident: (8_306_780 + 4096) * 1024, huge: (978_944 + 4096) * 1024 });
        let with_deleted = parse_smaps(SMAPS, is_weight_file);
        assert_eq!(with_deleted, ResidentPages { resident: (8_306_780 + 4096 + 2048) * 1024, huge: (978_944 + 4096 + 2048) * 1024 });
        // Unreadable values count as nothing; a header without a path starts no count.
        let odd = "garbage\nRss: 7 kB\n1000-2000 r--s 0 fe:01 5 /w.safetensors\nRss: x kB\nFilePmdMapped: 99999999999999999999 kB\nRss: 8 kB\n";
        assert_eq!(parse_smaps(odd, |p| p.ends_with(".safetensors")), ResidentPages { resident: 8 * 1024, huge: 0 });
    }

    /// Whether the mapping holding `addr` carries the kernel's `hg` flag (MADV_HUGEPAGE);
    /// `None` when the kernel has no transparent huge pages or the mapping is not found.
    #[cfg(target_os = "linux")]
    fn advised(addr: usize) -> Option<bool> {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("SKIPPED: this kernel has no transparent huge pages");
            return None;
        }
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                let range = usize::from_str_radix(lo, 16).unwrap_or(usize::MAX)..usize::from_str_radix(hi, 16).unwrap_or(0);
                inside = range.contains(&addr);
            } else if inside && first == "VmFlags:" {
                return Some(line.split_whitespace().any(|f| f == "hg"));
            }
        }
        eprintln!("SKIPPED: no mapping with VmFlags holds {addr:#x} in /proc/self/smaps");
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_allocation_is_aligned_and_advised() {
        let bytes = crate::aligned::AlignedBytes::zeroed(MIN_BYTES + 4096).unwrap();
        assert_eq!(bytes.as_ptr() as usize % SIZE, 0, "not aligned to a huge page");
        if let Some(hg) = advised(bytes.as_ptr() as usize) {
            assert!(hg, "the allocation's mapping lacks MADV_HUGEPAGE");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_weight_file_is_mapped_advised() {
        use crate::weights::{SafetensorsFile, SafetensorsWriter, TensorSpec};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let mut w = SafetensorsWriter::create(&path, vec![TensorSpec::new("w", crate::DType::F32, &[4])], &Default::default()).unwrap();
        w.write_tensor("w", &[0u8; 16]).unwrap();
        w.finish().unwrap();
        let file = SafetensorsFile::open(&path).unwrap();
        let addr = file.view("w").unwrap().bytes().as_ptr() as usize;
        let hg = advised(addr);
        drop(file);
        if let Some(hg) = hg {
            assert!(hg, "the weight file's mapping lacks MADV_HUGEPAGE");
        }
    }
}

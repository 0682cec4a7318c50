//! Benchmark helper (not part of the portal): the verified read path alone, in one process, no HTTP. Seals SIZE MiB
//! (default 256) of random bytes to a fresh data key in a temporary blob store (under $TMPDIR), then reads the blob
//! back through `open_verified` (age decryption + SHA-256 of the ciphertext checked at EOF) into a sink RUNS times
//! (default 5) and prints the median MiB/s of plaintext, and the CPU seconds of the process per GiB.

use std::io::{self, Read};
use std::time::Instant;

use pcii_portal::crypto::data_key::DataKey;
use pcii_portal::crypto::stream::{open_verified, seal_reader};
use pcii_portal::storage::fs::FsBlobStore;

struct Random(u64, u64);

impl Read for Random {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.1) as usize;
        for b in &mut buf[..n] {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
        self.1 -= n as u64;
        Ok(n)
    }
}

fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

fn main() -> Result<(), String> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mib = args.first().copied().unwrap_or(256);
    let runs = args.get(1).copied().unwrap_or(5).max(1);
    let dir = std::env::temp_dir().join(format!("pcii-read-blob-{}", std::process::id()));
    let store = FsBlobStore::open(&dir).map_err(|e| e.to_string())?;
    let key = DataKey::generate();
    let sealed = seal_reader(&store, &key.recipients(), Random(0x9e37_79b9, mib << 20))
        .map_err(|e| e.to_string())?;
    let mut speeds = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..runs {
        let (t0, c0) = (Instant::now(), cpu_secs());
        let mut r = open_verified(&store, &sealed.name, &key, &sealed.ciphertext_sha256)
            .map_err(|e| e.to_string())?;
        let n = io::copy(&mut r, &mut io::sink()).map_err(|e| e.to_string())?;
        assert_eq!(n, mib << 20);
        speeds.push(mib as f64 / t0.elapsed().as_secs_f64());
        cpu.push((cpu_secs() - c0) * 1024.0 / mib as f64);
    }
    let _ = std::fs::remove_dir_all(&dir);
    speeds.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    println!(
        "verified read of {mib} MiB: median {:.0} MiB/s (runs {:?}), {:.2} CPU s per GiB",
        speeds[speeds.len() / 2],
        speeds.iter().map(|s| s.round() as u64).collect::<Vec<_>>(),
        cpu[cpu.len() / 2]
    );
    Ok(())
}

//! Rows `rss` (memory by profile count) and `size` (binary and image).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::procfs::*;
use crate::report::*;
use crate::support::{self, FakeSts, TokenDir};

pub(crate) fn row_rss(env: &Env, r: &mut Report) -> BTreeMap<usize, Mem> {
    let sts = FakeSts::start();
    let token = TokenDir::new(&support::valid_jwt());
    let mut mems = BTreeMap::new();
    let mut detail = String::from(
        "### Resident memory (kB, /proc/PID/status after every profile is written and 2 s of quiet)\n\n\
         | profiles | VmRSS | VmHWM | RssAnon | RssFile | threads | start to all written |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in [1usize, 10, 100, 1000] {
        let mut sc = Sidecar::start(env, &sts.endpoint(), n, &token);
        let limit = Duration::from_secs(120);
        let written = sc.wait_written(n, Duration::from_millis(10), limit);
        let took = written - sc.started;
        // Quiet: every profile written, nothing due for an hour.
        std::thread::sleep(Duration::from_secs(2));
        if !sc.alive() {
            sc.fail("rolecall exited");
        }
        let m = sc.mem();
        let _ = writeln!(
            detail,
            "| {n} | {} | {} | {} | {} | {} | {:.0} ms |",
            m.rss,
            m.hwm,
            m.anon,
            m.file,
            m.threads,
            ms(took)
        );
        let target = if n == 10 {
            "≤ 6 MiB (6144 kB)"
        } else {
            "—"
        };
        let met = (n == 10).then_some(m.rss <= 6144);
        r.line(
            "rss",
            format!("steady RSS, {n} profile{}", if n == 1 { "" } else { "s" }),
            format!(
                "{} (HWM {}, anon {}, file {})",
                kib(m.rss),
                m.hwm,
                m.anon,
                m.file
            ),
            target,
            met,
        );
        mems.insert(n, m);
    }
    let (m10, m1000) = (mems[&10], mems[&1000]);
    let per = (m1000.rss as f64 - m10.rss as f64) / 990.0;
    let per_anon = (m1000.anon as f64 - m10.anon as f64) / 990.0;
    r.line(
        "rss",
        "cost per extra profile, (RSS(1000) − RSS(10)) / 990",
        format!("{per:.1} KiB (RssAnon alone: {per_anon:.1} KiB)"),
        "≤ 16 KiB",
        Some(per <= 16.0),
    );
    let _ = writeln!(
        detail,
        "\nCost per extra profile: {per:.2} KiB of VmRSS, {per_anon:.2} KiB of RssAnon \
         ((1000 − 10) profiles). RssFile is the binary's own pages (a static binary maps no \
         libraries); RssAnon is heap, stacks and data.",
    );
    r.details.push(detail);
    mems
}

/// Binary size and runtime image size.
pub(crate) fn row_size(env: &Env, r: &mut Report) {
    let bytes = std::fs::metadata(&env.bin).map(|m| m.len()).unwrap_or(0);
    let st = match elf_is_static(&env.bin) {
        Some(true) => "static",
        Some(false) => "DYNAMIC (not the static build)",
        None => "not an ELF file?",
    };
    r.line(
        "size",
        "binary size",
        format!("{bytes} bytes ({:.2} MiB, {st})", bytes as f64 / 1048576.0),
        "—",
        None,
    );
    match image_size() {
        Some((size, created, id)) => {
            let bin_mtime = std::fs::metadata(&env.bin)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let stale = if created > 0 && bin_mtime > created {
                "; built before this binary: run make image-test to rebuild"
            } else {
                ""
            };
            r.line(
                "size",
                "runtime image localhost/rolecall:dev (uncompressed: config + layers)",
                format!(
                    "{size} bytes ({:.2} MiB), image {id}{stale}",
                    size as f64 / 1048576.0
                ),
                "≤ 8 MiB",
                Some(size <= 8 * 1024 * 1024),
            );
        }
        None => r.line(
            "size",
            "runtime image localhost/rolecall:dev",
            "no image: run make image-test",
            "≤ 8 MiB",
            None,
        ),
    }
}

/// (bytes, created unix seconds, short id) of localhost/rolecall:dev from
/// `buildah inspect`: the config blob plus every layer in the manifest.
pub(crate) fn image_size() -> Option<(u64, u64, String)> {
    let image = "localhost/rolecall:dev";
    for driver in [None, Some("vfs")] {
        let mut cmd = Command::new("buildah");
        if let Some(d) = driver {
            cmd.args(["--storage-driver", d]);
        }
        let out = cmd
            .args(["inspect", "--type", "image", image])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let manifest: serde_json::Value =
            serde_json::from_str(v.get("Manifest")?.as_str()?).ok()?;
        let config = manifest.pointer("/config/size")?.as_u64()?;
        let layers: u64 = manifest
            .get("layers")?
            .as_array()?
            .iter()
            .filter_map(|l| l.get("size")?.as_u64())
            .sum();
        let id: String = v
            .get("FromImageID")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .chars()
            .take(12)
            .collect();
        let created = v
            .pointer("/OCIv1/created")
            .and_then(|c| c.as_str())
            .map(|c| {
                let whole = c.split('.').next().unwrap_or(c).trim_end_matches('Z');
                support::parse_utc(&format!("{whole}Z"))
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            })
            .unwrap_or(0);
        return Some((config + layers, created, id));
    }
    None
}

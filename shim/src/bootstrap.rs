//! What differs between containerd versions at a shim's start: containerd
//! 2's `-info` (the runtime's name, version and OCI features), and the
//! answer to `start`: the plain socket address containerd 1.6 and 1.7 read,
//! or for containerd 2 the bootstrap document that selects the task API v3
//! (which the server serves beside v2).

use std::io::Read;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};

/// The runtime type containerd knows this shim by.
pub const RUNTIME_NAME: &str = "io.containerd.isoexec.v1";

/// containerd's type URL of the OCI features document (JSON in an Any).
const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// `-info`: a RuntimeInfo protobuf. The runtime options containerd passes
/// on standard input (an Any, possibly nothing) are given back as read.
pub fn info(stdin: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    stdin
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the runtime options: {e}"))?;
    let mut info = RuntimeInfo::new();
    info.name = RUNTIME_NAME.to_string();
    let mut version = RuntimeVersion::new();
    version.version = runtime::VERSION.to_string();
    info.version = MessageField::some(version);
    if !raw.is_empty() {
        let options = Any::parse_from_bytes(&raw)
            .map_err(|e| format!("the runtime options are not a protobuf Any: {e}"))?;
        info.options = MessageField::some(options);
    }
    let mut features = Any::new();
    features.type_url = FEATURES_TYPE.to_string();
    features.value = runtime::features::features().to_string().into_bytes();
    info.features = MessageField::some(features);
    info.write_to_bytes().map_err(|e| e.to_string())
}

/// What `start` prints for the shim listening at `address`.
pub fn start_answer(address: &str) -> String {
    let parent = std::os::unix::process::parent_id();
    let exe = std::fs::read_link(format!("/proc/{parent}/exe")).ok();
    answer_for(exe.and_then(|e| containerd_major(&e)), address)
}

fn answer_for(containerd_major: Option<u32>, address: &str) -> String {
    match containerd_major {
        Some(m) if m >= 2 => serde_json::json!({
            "version": 3,
            "address": address,
            "protocol": "ttrpc",
        })
        .to_string(),
        _ => address.to_string(),
    }
}

/// The major version of a containerd binary, from its Go build info (the
/// main package's path: `github.com/containerd/containerd/v2/...` from
/// containerd 2 on). `None` for anything else: the plain answer then,
/// which every containerd reads.
pub fn containerd_major(exe: &std::path::Path) -> Option<u32> {
    let info = go_buildinfo(exe)?;
    let find = |needle: &[u8]| info.windows(needle.len()).position(|w| w == needle);
    let at = find(b"path\tgithub.com/containerd/containerd")?;
    let rest = &info[at + b"path\tgithub.com/containerd/containerd".len()..];
    if let Some(v) = rest.strip_prefix(b"/v") {
        let digits: Vec<u8> = v
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        return std::str::from_utf8(&digits).ok()?.parse().ok();
    }
    Some(1)
}

/// The `.go.buildinfo` section of an ELF64 little-endian executable (at
/// most 64 KiB of it: the main package's path comes first).
fn go_buildinfo(exe: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(exe).ok()?;
    let mut read_at = |off: u64, len: usize| -> Option<Vec<u8>> {
        let mut b = vec![0u8; len];
        f.seek(SeekFrom::Start(off)).ok()?;
        f.read_exact(&mut b).ok()?;
        Some(b)
    };
    let h = read_at(0, 64)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&h, 0x28),
        usize::from(u16_at(&h, 0x3a)),
        usize::from(u16_at(&h, 0x3c)),
        usize::from(u16_at(&h, 0x3e)),
    );
    if shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let table = read_at(shoff, shentsize * shnum)?;
    let section = |i: usize| {
        let s = &table[i * shentsize..];
        (u32_at(s, 0) as usize, u64_at(s, 0x18), u64_at(s, 0x20))
    };
    let (_, str_off, str_size) = section(shstrndx);
    let names = read_at(str_off, usize::try_from(str_size).ok()?.min(1 << 20))?;
    (0..shnum).find_map(|i| {
        let (name, off, size) = section(i);
        let n = names.get(name..)?;
        let end = n.iter().position(|b| *b == 0)?;
        (&n[..end] == b".go.buildinfo")
            .then_some(())
            .and_then(|()| read_at(off, usize::try_from(size).ok()?.min(64 << 10)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_2_gets_the_bootstrap_document_others_the_address() {
        let a = "unix:///run/containerd/s/isoexec-1";
        assert_eq!(answer_for(None, a), a);
        assert_eq!(answer_for(Some(1), a), a);
        let v: serde_json::Value = serde_json::from_str(&answer_for(Some(2), a)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version": 3, "address": a, "protocol": "ttrpc"})
        );
    }

    #[test]
    fn info_is_a_runtime_info_with_the_features_and_the_options_given() {
        let mut opts = Any::new();
        opts.type_url = "runtimeoptions.v1.Options".into();
        opts.value = vec![0x12, 0x02, b'/', b'c'];
        let bytes = info(&mut opts.write_to_bytes().unwrap().as_slice()).unwrap();
        let i = RuntimeInfo::parse_from_bytes(&bytes).unwrap();
        assert_eq!(i.name, RUNTIME_NAME);
        assert_eq!(i.version.version, runtime::VERSION);
        assert_eq!(i.options.type_url, "runtimeoptions.v1.Options");
        assert_eq!(i.features.type_url, FEATURES_TYPE);
        let f: serde_json::Value = serde_json::from_slice(&i.features.value).unwrap();
        assert_eq!(f["ociVersionMax"], runtime::container::OCI_VERSION);
        // No options: none given back.
        let i = RuntimeInfo::parse_from_bytes(&info(&mut &b""[..]).unwrap()).unwrap();
        assert!(i.options.is_none());
        assert!(info(&mut &b"\xff\xff"[..]).is_err());
    }

    /// A minimal ELF64 file whose `.go.buildinfo` section holds `info`.
    fn elf_with_buildinfo(info: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.go.buildinfo\0";
        let (names_off, info_off) = (64u64, 64 + names.len() as u64);
        let shoff = info_off + info.len() as u64;
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(names);
        f.extend_from_slice(info);
        let header = |name: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            h
        };
        f.extend(header(0, 0, 0));
        f.extend(header(1, names_off, names.len() as u64));
        f.extend(header(11, info_off, info.len() as u64));
        f
    }

    #[test]
    fn the_containerd_major_version_is_read_from_its_build_info() {
        let dir = std::env::temp_dir().join(format!("isoexec-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (info, want) in [
            (
                &b"\xff Go buildinf:..path\tgithub.com/containerd/containerd/v2/cmd/containerd\n"[..],
                Some(2),
            ),
            (
                &b"\xff Go buildinf:..path\tgithub.com/containerd/containerd/cmd/containerd\n"[..],
                Some(1),
            ),
            (
                &b"\xff Go buildinf:..path\tgithub.com/other/daemon\n"[..],
                None,
            ),
        ] {
            let exe = dir.join("exe");
            std::fs::write(&exe, elf_with_buildinfo(info)).unwrap();
            assert_eq!(
                containerd_major(&exe),
                want,
                "{}",
                String::from_utf8_lossy(info)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // This test binary is not containerd: no answer.
        let me = std::env::current_exe().unwrap();
        assert_eq!(containerd_major(&me), None);
        // The distribution's containerd, when installed (1.x on Debian 12).
        let installed = std::path::Path::new("/usr/bin/containerd");
        if installed.exists() {
            assert_eq!(containerd_major(installed), Some(1));
        }
    }
}

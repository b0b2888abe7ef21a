//! Device rules as a cgroup v2 device program (`BPF_PROG_TYPE_CGROUP_DEVICE`).
//! Pure: the rules in, eBPF instructions out; [`crate::sys::bpf`] loads and
//! attaches them.
//!
//! The semantics are cgroup v1's `devices.allow`/`devices.deny` written in
//! order, starting from "deny everything": each access bit (mknod, read,
//! write) of a request is decided by the last rule that names it and matches
//! the device, and a request is allowed only when every bit it asks for is.
//! So `allow c 1:3 rwm` then `deny c 1:3 w` leaves `/dev/null` readable but
//! not writable, as on v1 and in runc.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }` (`access_type` is `access << 16 | type`) and returns
//! 1 to allow, 0 to deny.

use crate::plan::DeviceRule;

/// `BPF_DEVCG_DEV_BLOCK` and `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_MKNOD`, `_READ`, `_WRITE`, with the rule letter of each.
const ACCESS: [(char, i32); 3] = [('m', 1), ('r', 2), ('w', 4)];

/// One eBPF instruction, as the kernel takes it (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes of the instruction (little-endian, as on x86_64 and
    /// arm64).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Opcodes used (class | op | source).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_K: u8 = 0xb7; // dst = imm
const MOV64_X: u8 = 0xbf; // dst = src
const AND64_K: u8 = 0x57; // dst &= imm
const RSH64_K: u8 = 0x77; // dst >>= imm
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const JA: u8 = 0x05; // pc += off
const EXIT: u8 = 0x95;

// Registers: r1 the context; the fields loaded once into r2..r5.
const CTX: u8 = 1;
const TYPE: u8 = 2;
const ACC: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

/// A jump target, resolved when the program is assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

enum Item {
    Insn(Insn),
    /// A jump whose offset is filled in later.
    Jump {
        code: u8,
        dst: u8,
        imm: i32,
        to: Label,
    },
    Mark(Label),
}

#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn mark(&mut self, l: Label) {
        self.items.push(Item::Mark(l));
    }
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.items.push(Item::Insn(Insn {
            code,
            dst,
            src,
            off,
            imm,
        }));
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.items.push(Item::Jump { code, dst, imm, to });
    }
    fn ret(&mut self, value: i32) {
        self.op(MOV64_K, 0, 0, 0, value);
        self.op(EXIT, 0, 0, 0, 0);
    }

    fn assemble(self) -> Vec<Insn> {
        let mut at = vec![0usize; self.labels];
        let mut pc = 0;
        for item in &self.items {
            match item {
                Item::Mark(l) => at[l.0] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for item in self.items {
            match item {
                Item::Mark(_) => {}
                Item::Insn(i) => out.push(i),
                Item::Jump { code, dst, imm, to } => {
                    let off = at[to.0] as i64 - out.len() as i64 - 1;
                    out.push(Insn {
                        code,
                        dst,
                        src: 0,
                        // Programs are a few hundred instructions at most
                        // (the kernel takes a million).
                        off: off as i16,
                        imm,
                    });
                }
            }
        }
        out
    }
}

/// A major or minor number the program can compare with: the kernel's are
/// 12 and 20 bits; one that does not fit in an instruction's immediate can
/// match no device.
fn number(v: Option<i64>) -> Result<Option<i32>, ()> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None), // -1 is runc's and the spec's "any"
        Some(n) => i32::try_from(n).map(Some).map_err(|_| ()),
    }
}

/// The program for `rules` (in v1 order; see the module doc).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut a = Asm::default();
    let deny = a.label();
    let mut used_deny = false;
    a.op(LDX_MEM_W, TYPE, CTX, 0, 0);
    a.op(MOV64_X, ACC, TYPE, 0, 0);
    a.op(RSH64_K, ACC, 0, 0, 16);
    a.op(AND64_K, TYPE, 0, 0, 0xffff);
    a.op(LDX_MEM_W, MAJOR, CTX, 4, 0);
    a.op(LDX_MEM_W, MINOR, CTX, 8, 0);
    for (letter, bit) in ACCESS {
        let decided = a.label();
        // A bit the request does not ask for needs no rule.
        a.op(MOV64_X, SCRATCH, ACC, 0, 0);
        a.op(AND64_K, SCRATCH, 0, 0, bit);
        a.jump(JEQ_K, SCRATCH, 0, decided);
        let mut unconditional = false;
        for r in rules.iter().rev().filter(|r| r.access.contains(letter)) {
            let (Ok(major), Ok(minor)) = (number(r.major), number(r.minor)) else {
                continue;
            };
            if r.kind == 'a' && major.is_none() && minor.is_none() {
                // Matches every device: the rules before it are never
                // reached for this bit (the verifier refuses dead code).
                a.jump(JA, 0, 0, if r.allow { decided } else { deny });
                used_deny |= !r.allow;
                unconditional = true;
                break;
            }
            used_deny |= !r.allow;
            let next = a.label();
            match r.kind {
                'c' => a.jump(JNE_K, TYPE, DEV_CHAR, next),
                'b' => a.jump(JNE_K, TYPE, DEV_BLOCK, next),
                _ => {}
            }
            if let Some(m) = major {
                a.jump(JNE_K, MAJOR, m, next);
            }
            if let Some(m) = minor {
                a.jump(JNE_K, MINOR, m, next);
            }
            a.jump(JA, 0, 0, if r.allow { decided } else { deny });
            a.mark(next);
        }
        if !unconditional {
            // No rule names this bit for this device: denied by default.
            a.jump(JA, 0, 0, deny);
            used_deny = true;
        }
        a.mark(decided);
    }
    a.ret(1);
    if used_deny {
        a.mark(deny);
        a.ret(0);
    }
    a.assemble()
}

/// The program as the bytes `bpf(BPF_PROG_LOAD)` takes.
pub fn program_bytes(rules: &[DeviceRule]) -> Vec<u8> {
    program(rules)
        .into_iter()
        .flat_map(Insn::to_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        acc: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: acc.into(),
        }
    }

    /// The kernel's verifier refuses a program with an instruction no path
    /// reaches, or a jump out of it: check both, as it does.
    fn assert_verifiable(p: &[Insn]) {
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "a jump leaves the program: {p:?}");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            let i = p[pc];
            let target = (pc as i64 + 1 + i.off as i64) as usize;
            match i.code {
                EXIT => {}
                JA => todo.push(target),
                JNE_K | JEQ_K => todo.extend([pc + 1, target]),
                _ => todo.push(pc + 1),
            }
        }
        let dead: Vec<usize> = (0..p.len()).filter(|i| !seen[*i]).collect();
        assert!(dead.is_empty(), "unreachable instructions {dead:?}");
    }

    /// Runs the program in rbpf's interpreter on one request.
    fn allows(rules: &[DeviceRule], kind: i32, major: u32, minor: u32, access: &str) -> bool {
        let acc: i32 = ACCESS
            .iter()
            .filter(|(c, _)| access.contains(*c))
            .map(|(_, b)| *b)
            .sum();
        assert_verifiable(&program(rules));
        let prog = program_bytes(rules);
        let mut ctx = Vec::new();
        ctx.extend_from_slice(&(((acc as u32) << 16) | kind as u32).to_le_bytes());
        ctx.extend_from_slice(&major.to_le_bytes());
        ctx.extend_from_slice(&minor.to_le_bytes());
        let vm = rbpf::EbpfVmRaw::new(Some(&prog)).expect("rbpf accepts the program");
        match vm.execute_program(&mut ctx).expect("the program runs") {
            1 => true,
            0 => false,
            v => panic!("the program returned {v}"),
        }
    }

    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;

    fn isoexec_defaults() -> Vec<DeviceRule> {
        crate::plan::device_rules(&[], &[]).unwrap()
    }

    #[test]
    fn no_rules_deny_everything() {
        assert!(!allows(&[], C, 1, 3, "r"));
        assert!(!allows(&[], B, 8, 0, "m"));
    }

    #[test]
    fn the_defaults_open_the_standard_nodes_only() {
        let rules = isoexec_defaults();
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 4),
            (10, 200),
        ] {
            assert!(allows(&rules, C, maj, min, "rw"), "c {maj}:{min} rw");
        }
        // mknod of anything, but no access to what was made.
        assert!(allows(&rules, C, 1, 11, "m"));
        assert!(allows(&rules, B, 8, 0, "m"));
        assert!(!allows(&rules, C, 1, 11, "w"), "/dev/kmsg");
        assert!(!allows(&rules, C, 1, 1, "r"), "/dev/mem");
        assert!(!allows(&rules, B, 8, 0, "r"), "a host disk");
        assert!(!allows(&rules, B, 8, 0, "rw"));
        assert!(!allows(&rules, C, 4, 0, "w"), "a tty");
        assert!(!allows(&rules, B, 1, 3, "r"), "block 1:3 is not char 1:3");
    }

    #[test]
    fn a_later_rule_overrides_an_earlier_one_per_access_bit() {
        let rules = vec![
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ];
        assert!(allows(&rules, C, 1, 3, "r"));
        assert!(!allows(&rules, C, 1, 3, "w"));
        assert!(
            !allows(&rules, C, 1, 3, "rw"),
            "write is part of the request"
        );
        assert!(allows(&rules, C, 1, 3, "m"));
        // And back again.
        let mut again = rules.clone();
        again.push(rule(true, 'c', Some(1), Some(3), "w"));
        assert!(allows(&again, C, 1, 3, "rw"));
    }

    #[test]
    fn access_granted_by_separate_rules_adds_up() {
        let rules = vec![
            rule(true, 'c', Some(1), Some(3), "r"),
            rule(true, 'c', Some(1), Some(3), "w"),
        ];
        assert!(allows(&rules, C, 1, 3, "rw"));
        assert!(!allows(&rules, C, 1, 3, "m"));
    }

    #[test]
    fn wildcards_and_allow_all() {
        let all = vec![rule(true, 'a', None, None, "rwm")];
        assert!(allows(&all, B, 8, 0, "rwm"));
        let mut but_disks = all.clone();
        but_disks.push(rule(false, 'b', Some(8), None, "rwm"));
        assert!(!allows(&but_disks, B, 8, 1, "r"));
        assert!(allows(&but_disks, B, 9, 1, "r"));
        assert!(allows(&but_disks, C, 8, 1, "r"));
        // A later "deny all" undoes an earlier "allow all", as on v1.
        let then_deny = vec![
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'a', None, None, "rwm"),
        ];
        assert!(!allows(&then_deny, C, 1, 3, "r"));
        let any_minor = vec![rule(true, 'c', Some(136), None, "rw")];
        assert!(allows(&any_minor, C, 136, 99, "rw"));
        assert!(!allows(&any_minor, C, 137, 0, "r"));
        let minus_one = vec![rule(true, 'c', Some(-1), Some(-1), "r")];
        assert!(allows(&minus_one, C, 4, 7, "r"));
    }

    #[test]
    fn a_number_no_device_has_matches_nothing() {
        let rules = vec![
            rule(true, 'c', Some(1 << 40), Some(3), "rwm"),
            rule(true, 'c', Some(1), Some(5), "rwm"),
        ];
        assert!(!allows(&rules, C, 0, 3, "r"));
        assert!(allows(&rules, C, 1, 5, "r"));
    }

    #[test]
    fn spec_rules_follow_the_default_deny() {
        let spec = [oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(oci_spec::runtime::LinuxDeviceType::B)
            .major(7i64)
            .minor(0i64)
            .access("r")
            .build()
            .unwrap()];
        let rules = crate::plan::device_rules(&spec, &[]).unwrap();
        assert!(allows(&rules, B, 7, 0, "r"));
        assert!(!allows(&rules, B, 7, 0, "w"));
        assert!(!allows(&rules, B, 7, 1, "r"));
    }

    #[test]
    fn encoding_matches_the_kernels_layout() {
        let i = Insn {
            code: LDX_MEM_W,
            dst: 4,
            src: 1,
            off: 4,
            imm: 0,
        };
        assert_eq!(i.to_bytes(), [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
        let p = program(&isoexec_defaults());
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        assert!(p.len() < 200, "{} instructions", p.len());
    }
}

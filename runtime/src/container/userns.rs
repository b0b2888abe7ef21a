//! The driver's pool of host id ranges for tasks' user namespaces
//! (`userns = "auto"`): slot N is claimed by a file `.userns/N` in the
//! state root naming its holder, made under the root's lock. The holder is
//! a task, or a sandbox, whose tasks share one range (their `/alloc` is
//! owned by the same ids in each). A slot is given back when its holder's
//! last task is deleted; a claim nobody holds any more (a create killed
//! half-way) is taken over once it is five minutes old.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::UserNsPool;
use crate::error::{Context, Error, Result};

fn pool_dir(root: &Path) -> PathBuf {
    root.join(".userns")
}

/// Who holds a slot, as written in its claim.
pub fn holder(id: &str, sandbox: Option<&str>) -> String {
    match sandbox {
        Some(s) => format!("sandbox {s}"),
        None => format!("task {id}"),
    }
}

/// The holders of the state root's tasks that hold a pool slot (but
/// task `except`'s).
fn holders(root: &Path, except: Option<&str>) -> Vec<String> {
    super::list(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|(id, _)| Some(id.as_str()) != except)
        .filter_map(|(id, c)| {
            let c = c?;
            c.state.userns.as_ref()?.pool_slot?;
            Some(holder(&id, c.state.sandbox.as_deref()))
        })
        .collect()
}

/// The slot `holder` has, or the lowest free one, claimed for it.
pub fn claim(root: &Path, pool: &UserNsPool, holder: &str) -> Result<u32> {
    let _lock = super::lock_root(root)?;
    let dir = pool_dir(root);
    super::private_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let held = holders(root, None);
    let mut used = Vec::new();
    for e in std::fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
        let e = e.ctx(|| format!("reading {}", dir.display()))?;
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
        if owner == holder && n < pool.slots {
            return Ok(n);
        }
        // A claim is made before its task's state: a young one is a
        // create under way.
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_secs(300));
        if young || held.contains(&owner) {
            used.push(n);
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    used.sort_unstable();
    let slot = (0..pool.slots)
        .find(|n| used.binary_search(n).is_err())
        .ok_or_else(|| {
            Error::Policy(format!(
                "the user namespace pool is full: its {} ranges of {} host ids are held (userns_range, userns_size)",
                pool.slots, pool.size
            ))
        })?;
    let path = dir.join(slot.to_string());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ctx(|| format!("claiming {}", path.display()))?;
    f.write_all(holder.as_bytes())
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(slot)
}

/// Gives slot `slot` back unless a task but `except` still belongs to
/// `holder`.
pub fn release(root: &Path, slot: u32, holder: &str, except: Option<&str>) {
    let Ok(_lock) = super::lock_root(root) else {
        return;
    };
    if holders(root, except).iter().any(|h| h == holder) {
        return;
    }
    let dir = pool_dir(root);
    let path = dir.join(slot.to_string());
    if std::fs::read_to_string(&path).is_ok_and(|o| o == holder) {
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir); // only when empty
}

//! Killing a whole process tree on Linux: the process group of a command plus every descendant
//! found through the parent links in `/proc/*/stat` (which also finds those that called `setsid`).
//! Terminating is gentle first (SIGTERM to the tree, a grace period, then SIGKILL), as nextest
//! does; what a command leaves in its group after it exits is listed (leaked) and killed.
//! Every function here scans `/proc` or may: call them off the async workers.

use std::collections::{HashMap, HashSet};

/// How many times the tree is re-scanned while freezing it, to catch processes forked meanwhile.
const FREEZE_ROUNDS: usize = 8;

/// SIGKILL `pid`, its process group and every descendant of it.
///
/// `pid` must be a child of ours that has not been reaped yet (alive or a zombie), so that
/// neither its pid nor its process group id can have been reused. Descendants are first frozen
/// with SIGSTOP (a stopped process can neither fork nor exit, so the parent links stay valid
/// while we look), then everything is killed. Descendants that were re-parented away before the
/// scan (their parent already died) cannot be found this way; the process group still gets them
/// unless they also left the group. Best effort: errors (already gone) are ignored.
pub(crate) fn kill_tree(pid: u32) {
    let Some(root) = target_pid(pid) else {
        return;
    };
    let group = process_group_of(root);
    if let Some(group) = group {
        signal_group(group, libc::SIGSTOP);
    }
    signal(root, libc::SIGSTOP);
    let mut frozen: HashSet<i32> = HashSet::new();
    for _ in 0..FREEZE_ROUNDS {
        let mut new = false;
        for child in descendants(root, &children_by_parent()) {
            if frozen.insert(child) {
                signal(child, libc::SIGSTOP);
                new = true;
            }
        }
        if !new {
            break;
        }
    }
    if let Some(group) = group {
        signal_group(group, libc::SIGKILL);
    }
    signal(root, libc::SIGKILL);
    for &child in &frozen {
        signal(child, libc::SIGKILL);
    }
}

/// A process of a command's tree as seen when it was asked to terminate: its pid and its start
/// time (clock ticks after boot), so that a later SIGKILL never hits a reused pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pid: i32,
    start: u64,
}

/// SIGTERM `pid`, its process group and every descendant of it (a chance to clean up), and
/// return the descendants seen, for [`kill_seen`] once the grace period is over.
///
/// `pid` must be an unreaped child of ours, as for [`kill_tree`]. Nothing is frozen: a process
/// handling SIGTERM must be able to run.
pub(crate) fn terminate_tree(pid: u32) -> Vec<Seen> {
    let Some(root) = target_pid(pid) else {
        return Vec::new();
    };
    let seen: Vec<Seen> = descendants(root, &children_by_parent())
        .into_iter()
        .filter_map(|pid| {
            stat_of(pid).map(|st| Seen {
                pid,
                start: st.start,
            })
        })
        .collect();
    if let Some(group) = process_group_of(root) {
        signal_group(group, libc::SIGTERM);
    }
    signal(root, libc::SIGTERM);
    for s in &seen {
        signal(s.pid, libc::SIGTERM);
    }
    seen
}

/// SIGKILL every process of `seen` that is still the same process (same start time).
pub(crate) fn kill_seen(seen: &[Seen]) {
    for s in seen {
        if stat_of(s.pid).is_some_and(|st| st.start == s.start) {
            signal(s.pid, libc::SIGKILL);
        }
    }
}

/// Does the process group `pgid` still have a member? One syscall, no `/proc` scan: cheap
/// enough to ask after every command.
pub(crate) fn group_alive(pgid: u32) -> bool {
    target_pid(pgid)
        .filter(|&g| g != own_group())
        // SAFETY: killpg(2) with signal 0 only checks for existence; the group is not ours.
        .is_some_and(|g| unsafe { libc::killpg(g, 0) } == 0)
}

/// List the members of the process group `pgid` (what a command left behind: `pid (comm)`),
/// then SIGKILL the group. Scans `/proc`: only called when [`group_alive`] said so.
pub(crate) fn kill_leftovers(pgid: u32) -> Vec<adaptest_schema::LeakedProcess> {
    let Some(group) = target_pid(pgid).filter(|&g| g != own_group()) else {
        return Vec::new();
    };
    signal_group(group, libc::SIGSTOP);
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(st) = stat_of(pid).filter(|st| st.pgrp == group) {
                found.push(adaptest_schema::LeakedProcess {
                    pid: pid as u32,
                    command: st.comm,
                });
            }
        }
    }
    signal_group(group, libc::SIGKILL);
    found.sort_by_key(|p| p.pid);
    found
}

/// SIGKILL what is left of the process group `pgid` (the group a command was started in).
///
/// Cheap (one syscall, no `/proc` scan): used after every normal exit. Safe to call after the
/// leader was reaped: Linux does not reuse a pid while it is still some process's group id.
pub(crate) fn kill_group(pgid: u32) {
    if let Some(pgid) = target_pid(pgid).filter(|&g| g != own_group()) {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// `pid` as a signal target, refusing 0, 1, our own pid and anything out of range: `kill(0)`,
/// `killpg(0)` and `kill(-1)` would hit far more than the command.
fn target_pid(pid: u32) -> Option<i32> {
    let pid = i32::try_from(pid).ok()?;
    (pid > 1 && pid != std::process::id() as i32).then_some(pid)
}

/// The process group of `pid`, unless it is ours (a command must never take the harness down).
fn process_group_of(pid: i32) -> Option<i32> {
    // SAFETY: getpgid(2) takes a plain integer and touches no memory of ours.
    let group = unsafe { libc::getpgid(pid) };
    (group > 1 && group != own_group()).then_some(group)
}

fn own_group() -> i32 {
    // SAFETY: getpgrp(2) takes no arguments and cannot fail.
    unsafe { libc::getpgrp() }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers; callers pass a pid > 1 (never a group or broadcast).
    unsafe { libc::kill(pid, sig) };
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: killpg(2) takes plain integers; callers pass a group id > 1 that is not ours.
    unsafe { libc::killpg(pgid, sig) };
}

/// Every process visible in `/proc`, grouped by parent pid.
fn children_by_parent() -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ppid) = parent_from_stat(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

/// What we read from `/proc/<pid>/stat`.
struct Stat {
    comm: String,
    pgrp: i32,
    start: u64,
}

fn stat_of(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp … starttime(22nd field) …`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat[close + 1..].split_ascii_whitespace().collect();
    Some(Stat {
        comm,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The parent pid from the text of `/proc/<pid>/stat`: `pid (comm) state ppid …`, where `comm`
/// may itself contain spaces and parentheses (so we split after the last `)`).
fn parent_from_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// All descendants of `root` (not `root` itself), breadth first.
fn descendants(root: i32, children: &HashMap<i32, Vec<i32>>) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_from_stat_handles_odd_comm() {
        assert_eq!(parent_from_stat("42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_from_stat("42 (a) b (c)) R 9 1 1"), Some(9));
        assert_eq!(parent_from_stat("42 (x y) Z 1"), Some(1));
        assert_eq!(parent_from_stat("garbage"), None);
    }

    #[test]
    fn stat_gives_comm_group_and_start_time() {
        let st = parse_stat(
            "42 (a b) c) S 7 40 40 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10",
        )
        .unwrap();
        assert_eq!(
            (st.comm.as_str(), st.pgrp, st.start),
            ("a b) c", 40, 123456)
        );
        let me = stat_of(std::process::id() as i32).unwrap();
        assert_eq!(me.pgrp, own_group());
    }

    #[test]
    fn descendants_walks_the_whole_tree() {
        let children = HashMap::from([(1, vec![10, 20]), (10, vec![11, 12]), (12, vec![13])]);
        let mut found = descendants(10, &children);
        found.sort_unstable();
        assert_eq!(found, vec![11, 12, 13]);
        assert!(descendants(13, &children).is_empty());
    }

    #[test]
    fn refuses_dangerous_targets() {
        assert_eq!(target_pid(0), None);
        assert_eq!(target_pid(1), None);
        assert_eq!(target_pid(std::process::id()), None);
        assert_eq!(target_pid(u32::MAX), None);
        assert_eq!(target_pid(12345), Some(12345));
    }

    #[test]
    fn our_own_process_shows_up_under_its_parent() {
        let me = std::process::id() as i32;
        // SAFETY: getppid(2) takes no arguments and cannot fail.
        let parent = unsafe { libc::getppid() };
        assert!(children_by_parent()[&parent].contains(&me));
    }
}

//! The uninstall residue item: a snapshot of the target before `install` and after `uninstall`
//! (files under the configured roots, systemd units, users and groups, listening TCP ports,
//! orphaned processes), taken by one POSIX shell script per snapshot and kept on the target;
//! only the added lines (`sort` + `comm -13`) come back to the harness.

use super::slots::{Ctx, PairSlot};
use crate::kinds::CaseOutcome;
use crate::spec::glob::glob_match;
use adaptest_adapters::component::Residue;
use adaptest_adapters::target::ExecRequest;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Quote for `sh`.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where the snapshots live on the target (the same for both steps of one pair in one run).
fn base(pair: &PairSlot) -> String {
    format!(
        "${{TMPDIR:-/tmp}}/adaptest-residue-{}-{}-{}",
        std::process::id(),
        pair.target
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        pair.spec
            .id
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The script writing one sorted snapshot to `out`: `F path`, `U unit`, `user:name`,
/// `group:name`, `port:tcp:N`, `process:comm` (processes whose parent is 1: daemons).
fn snapshot_script(r: &Residue, out: &str) -> String {
    let roots: Vec<String> = r.roots.iter().map(|x| q(x)).collect();
    format!(
        r#"LC_ALL=C; export LC_ALL
out="{out}"
{{
for root in {roots}; do
    [ -d "$root" ] || continue
    find "$root" -xdev \( -type f -o -type l \) 2>/dev/null | sed 's/^/file:/'
done
for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$d" ] && ls "$d" 2>/dev/null | sed 's/^/unit:/'
done
[ -r {passwd} ] && cut -d: -f1 {passwd} | sed 's/^/user:/'
[ -r {group} ] && cut -d: -f1 {group} | sed 's/^/group:/'
for t in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$t" ] || continue
    while read -r sl local rem st rest; do
        [ "$st" = 0A ] || continue
        echo "port:tcp:$((0x${{local##*:}}))"
    done < "$t"
done
for p in /proc/[0-9]*; do
    [ -r "$p/stat" ] || continue
    read -r s < "$p/stat" 2>/dev/null || continue
    rest=${{s##*) }}
    set -- $rest
    [ "$2" = 1 ] || continue
    c=${{s#*(}}; echo "process:${{c%)*}}"
done
}} | sort -u > "$out.tmp" && mv "$out.tmp" "$out"
"#,
        roots = roots.join(" "),
        passwd = q(&r.passwd),
        group = q(&r.group),
    )
}

async fn exec(ctx: &Ctx, pair: &PairSlot, script: String) -> Result<String, String> {
    let target = ctx.targets[&pair.target].target.clone();
    let out = target
        .exec(
            ExecRequest::new(script, SNAPSHOT_TIMEOUT),
            &CancellationToken::new(),
        )
        .await
        .map_err(|e| adaptest_adapters::text::error_chain(&e))?;
    if out.exit_code != Some(0) {
        return Err(format!(
            "the snapshot script failed (exit {:?}): {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Before `install`: the first snapshot. An error is kept for the item (not fatal to the run).
pub(super) async fn before(ctx: &Ctx, pair: &PairSlot, r: &Residue) -> Result<(), String> {
    let b = base(pair);
    exec(ctx, pair, snapshot_script(r, &format!("{b}.before")))
        .await
        .map(|_| ())
}

/// After `uninstall`: the second snapshot, the added lines, the verdict.
pub(super) async fn after(ctx: &Ctx, pair: &PairSlot, r: &Residue) -> CaseOutcome {
    let b = base(pair);
    let script = format!(
        "[ -f \"{b}.before\" ] || {{ echo 'no snapshot from before install' >&2; exit 3; }}\n{}\
         comm -13 \"{b}.before\" \"{b}.after\"; rc=$?; rm -f \"{b}.before\" \"{b}.after\"; exit $rc\n",
        snapshot_script(r, &format!("{b}.after"))
    );
    let added = match exec(ctx, pair, script).await {
        Ok(a) => a,
        Err(why) => return CaseOutcome::error(format!("residue snapshot: {why}")),
    };
    judge(&added, r)
}

/// The item from the added snapshot lines: failed when one is not allowed by a glob.
fn judge(added: &str, r: &Residue) -> CaseOutcome {
    let mut left = Vec::new();
    let mut allowed = Vec::new();
    for line in added.lines().filter(|l| !l.is_empty()) {
        let (kind, what) = line.split_once(':').unwrap_or(("", line));
        let ok = r
            .allow
            .iter()
            .any(|g| glob_match(g, what) || glob_match(g, line));
        // The snapshot's own processes (sh, find, sort) are children of the exec, never of 1.
        let entry = format!("{kind} {what}");
        if ok {
            allowed.push(entry);
        } else {
            left.push(entry);
        }
    }
    let mut log = String::new();
    for l in &left {
        log.push_str(&format!("left: {l}\n"));
    }
    for l in &allowed {
        log.push_str(&format!("allowed: {l}\n"));
    }
    let mut o = if left.is_empty() {
        CaseOutcome::passed()
    } else {
        let shown: Vec<&str> = left.iter().take(20).map(String::as_str).collect();
        CaseOutcome::failed(format!(
            "uninstall left {} item(s) the plan does not allow: {}{}",
            left.len(),
            shown.join(", "),
            if left.len() > 20 { ", …" } else { "" }
        ))
    };
    o.stdout = log.clone();
    o.log = log;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_fail_unless_allowed() {
        let r = Residue {
            allow: vec!["/var/log/foo/*".into(), "user:svc".into()],
            ..Residue::default()
        };
        let o = judge(
            "file:/etc/foo.conf\nfile:/var/log/foo/a.log\nuser:svc\ngroup:foo\n",
            &r,
        );
        let why = o.reason.unwrap();
        assert!(why.contains("2 item(s)"), "{why}");
        assert!(
            why.contains("file /etc/foo.conf") && why.contains("group foo"),
            "{why}"
        );
        assert!(!why.contains("a.log"), "{why}");
        assert!(o.log.contains("allowed: file /var/log/foo/a.log"));
        assert_eq!(judge("", &r).status, adaptest_reports::Status::Passed);
    }
}

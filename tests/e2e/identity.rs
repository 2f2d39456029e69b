//! Hardware identity (issue 12 part 5): the probe's DMI, PCI, CPU ids, NUMA, disks and NICs of
//! this host, checked against what /sys says, and shown in both report languages.

use crate::util::{Sandbox, env_of, local_plan, suite_toml};

fn count(dir: &str, prefix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count()
    })
}

#[test]
fn hardware_identity_of_this_host_is_probed_and_reported() {
    let sb = Sandbox::new();
    sb.write("plan.toml", &local_plan(&["t.id"]));
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.id",
            "identity",
            "os",
            "[[case]]\nid = \"true\"\ntitle = \"true\"\ntitle_zh = \"真\"\nrun = \"true\"\n",
        ),
    );
    sb.run_own_suites(&[]).expect_code(0);
    let dir = sb.run_dir();
    let env = env_of(&dir, "local");
    let hw = &env["hardware"];
    assert!(hw.is_object(), "no hardware in env/local.json: {env}");
    // NUMA nodes and PCI functions: the same numbers /sys gives.
    let nodes = count("/sys/devices/system/node", "node");
    if nodes > 0 {
        assert_eq!(hw["numa_nodes"].as_u64(), Some(nodes as u64), "{hw}");
    } else {
        assert!(hw["missing"]["numa"].as_str().is_some(), "{hw}");
    }
    let pci = count("/sys/bus/pci/devices", "");
    let listed = hw["pci"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, pci, "{hw}");
    if pci == 0 {
        assert!(hw["missing"]["pci"].as_str().is_some(), "{hw}");
    }
    for d in hw["pci"].as_array().into_iter().flatten() {
        let vendor = std::fs::read_to_string(format!(
            "/sys/bus/pci/devices/{}/vendor",
            d["address"].as_str().unwrap()
        ))
        .unwrap();
        assert_eq!(
            d["vendor"].as_str().unwrap(),
            vendor.trim().trim_start_matches("0x")
        );
    }
    // DMI: the vendor when readable, else the reason.
    match std::fs::read_to_string("/sys/class/dmi/id/sys_vendor") {
        Ok(v) if !v.trim().is_empty() => assert_eq!(hw["dmi"]["sys_vendor"], v.trim(), "{hw}"),
        _ => assert!(
            hw["missing"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("dmi")),
            "{hw}"
        ),
    }
    // The CPU: a microarchitecture name or an explicit "unknown (…)".
    let ua = hw["cpu"]["microarch"].as_str().unwrap_or("");
    assert!(
        !ua.is_empty() || hw["missing"]["cpu.microarch"].is_string(),
        "{hw}"
    );
    // NICs with a device carry their driver.
    for n in hw["nics"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap();
        let link = std::fs::read_link(format!("/sys/class/net/{name}/device/driver")).unwrap();
        assert_eq!(
            n["driver"],
            link.file_name().unwrap().to_string_lossy().as_ref()
        );
    }

    let d = dir.to_str().unwrap();
    let en = sb.run(&["report", d, "--format", "html", "--lang", "en"]);
    en.expect_code(0)
        .expect_in_stdout("CPU identity")
        .expect_in_stdout("NUMA nodes");
    let zh = sb.run(&["report", d, "--format", "html", "--lang", "zh-CN"]);
    zh.expect_code(0)
        .expect_in_stdout("CPU 标识")
        .expect_in_stdout("PCI 设备")
        .expect_in_stdout("认证结论可继承的平台");
    // The run is certified: the report lists what the built-in rule admits (or why nothing).
    en.expect_in_stdout("Certification also covers")
        .expect_in_stdout("server: ");
    if let Some(first) = hw["pci"].as_array().and_then(|a| a.first()) {
        en.expect_in_stdout(first["address"].as_str().unwrap());
    }
}

/// A certified run of this host, and `env/local.json` as the platform file to edit.
fn certified_run(sb: &Sandbox) -> (std::path::PathBuf, serde_json::Value) {
    sb.write("plan.toml", &local_plan(&["t.id"]));
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.id",
            "identity",
            "os",
            "[[case]]\nid = \"true\"\ntitle = \"true\"\ntitle_zh = \"真\"\nrun = \"true\"\n",
        ),
    );
    sb.run_own_suites(&[]).expect_code(0);
    let dir = sb.run_dir();
    let env = env_of(&dir, "local");
    (dir, env)
}

#[test]
fn inherit_covers_another_host_of_the_same_platform_but_not_another_cpu_generation() {
    let sb = Sandbox::new();
    let (dir, env) = certified_run(&sb);
    let d = dir.to_str().unwrap();
    // This host may have no DMI (a VM without it): the center's rule leaves the board out.
    sb.write(
        "rules.toml",
        "[[rule]]\nid = \"cpu-os\"\ntitle = \"same CPU generation and OS\"\n\
         same = [\"arch\", \"cpu_generation\", \"os_lineage\", \"os_major\"]\n",
    );
    let mut other_host = env.clone();
    other_host["hostname"] = "another-host".into();
    sb.write("host.json", &other_host.to_string());
    sb.run(&[
        "inherit",
        d,
        "--platform",
        "host.json",
        "--rules",
        "rules.toml",
    ])
    .expect_code(0)
    .expect_in_stdout("covered: `another-host`")
    .expect_in_stdout("rule `cpu-os`");

    let mut other_cpu = other_host.clone();
    other_cpu["hardware"]["cpu"]["microarch"] = "Some Later Generation".into();
    sb.write("cpu.json", &other_cpu.to_string());
    sb.run(&[
        "inherit",
        d,
        "--platform",
        "cpu.json",
        "--rules",
        "rules.toml",
    ])
    .expect_code(1)
    .expect_in_stdout("not covered")
    .expect_in_stdout("rule `cpu-os`: cpu_generation differs")
    .expect_in_stdout("Some Later Generation");

    // The listing of covered classes names the rule.
    sb.run(&["inherit", d, "--rules", "rules.toml"])
        .expect_code(0)
        .expect_in_stdout("local · rule cpu-os: covers arch");

    // The default rule needs the board; when this host has none, it says why, naming the rule.
    if env["hardware"]["dmi"]["board_name"].is_null() {
        sb.run(&["inherit", d, "--platform", "host.json"])
            .expect_code(1)
            .expect_in_stdout("rule `server`: board");
    } else {
        sb.run(&["inherit", d, "--platform", "host.json"])
            .expect_code(0);
    }

    // Bad input: file, line and field.
    sb.write(
        "bad.toml",
        "[[rule]]\nid = \"x\"\nsame = [\"arch\",\n  \"cpu_gen\"]\n",
    );
    sb.run(&[
        "inherit",
        d,
        "--platform",
        "host.json",
        "--rules",
        "bad.toml",
    ])
    .expect_code(2)
    .expect_in_stderr("bad.toml")
    .expect_in_stderr("rule[0].same")
    .expect_in_stderr("cpu_gen");
    sb.write("notenv.json", "[1, 2]");
    sb.run(&["inherit", d, "--platform", "notenv.json"])
        .expect_code(2)
        .expect_in_stderr("notenv.json");
}

/// A plan whose component `pkg` installs with `install` and uninstalls with `uninstall`; the
/// residue snapshot looks at a scratch root and scratch passwd/group files only (a test must not
/// create real users). Processes and ports are allowed: other work on this machine starts
/// daemons and servers between the two snapshots.
fn residue_plan(sb: &Sandbox, install: &str, uninstall: &str) {
    let d = sb.path().display().to_string();
    std::fs::create_dir_all(sb.path().join("root/etc")).unwrap();
    sb.write("root/etc/existing.conf", "old\n");
    sb.write("passwd", "root:x:0:0::/root:/bin/sh\n");
    sb.write("group", "root:x:0:\n");
    sb.write(
        "suites/t.toml",
        &suite_toml(
            "t.id",
            "identity",
            "os",
            "[[case]]\nid = \"true\"\ntitle = \"true\"\ntitle_zh = \"真\"\nrun = \"true\"\n",
        ),
    );
    sb.write(
        "plan.toml",
        &format!(
            r#"[product]
name = "pkg"
version = "1"
vendor = "test"

[[target]]
id = "local"
kind = "local"

[[component]]
id = "pkg"
kind = "os"

[component.lifecycle]
install = "{install}"
uninstall = "{uninstall}"
residue_roots = ["{d}/root"]
residue_passwd = "{d}/passwd"
residue_group = "{d}/group"
residue_allow = ["process:*", "port:*", "{d}/root/var/log/pkg/*"]

[[matrix]]
targets = ["local"]
components = ["pkg"]
suites = ["t.id"]
"#
        )
        .replace("$D", &d),
    );
}

#[test]
fn uninstall_residue_names_the_file_and_the_user_left_behind() {
    let sb = Sandbox::new();
    residue_plan(
        &sb,
        "echo x > $D/root/etc/pkg.conf; mkdir -p $D/root/var/log/pkg; echo l > $D/root/var/log/pkg/a.log; echo 'pkgsvc:x:990:990::/:/bin/false' >> $D/passwd",
        "rm -f $D/root/var/log/pkg/a.log",
    );
    sb.run_own_suites(&[]).expect_code(1);
    let res = crate::util::results(&sb.run_dir());
    let item = crate::util::case(&res, "local/pkg/lifecycle", "residue");
    assert_eq!(item["status"], "failed", "{item}");
    let why = crate::util::reason(item);
    let d = sb.path().display().to_string();
    assert!(
        why.contains(&format!("file {d}/root/etc/pkg.conf")),
        "{why}"
    );
    assert!(why.contains("user pkgsvc"), "{why}");
    assert!(why.contains("2 item(s)"), "{why}");
    assert!(!why.contains("existing.conf"), "{why}");
    // The report shows the item and what was left.
    let html = std::fs::read_to_string(sb.run_dir().join("report.html")).unwrap();
    assert!(
        html.contains("pkgsvc"),
        "report does not name the leftover user"
    );
}

#[test]
fn clean_uninstall_passes_the_residue_item() {
    let sb = Sandbox::new();
    residue_plan(
        &sb,
        "echo x > $D/root/etc/pkg.conf; echo 'pkgsvc:x:990:990::/:/bin/false' >> $D/passwd",
        "rm -f $D/root/etc/pkg.conf; sed -i '/^pkgsvc:/d' $D/passwd",
    );
    sb.run_own_suites(&[]).expect_code(0);
    let res = crate::util::results(&sb.run_dir());
    let item = crate::util::case(&res, "local/pkg/lifecycle", "residue");
    assert_eq!(item["status"], "passed", "{item}");
    let install = crate::util::case(&res, "local/pkg/lifecycle", "install");
    assert_eq!(install["status"], "passed", "{install}");
}

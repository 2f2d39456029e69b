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
        .expect_in_stdout("PCI 设备");
    if let Some(first) = hw["pci"].as_array().and_then(|a| a.first()) {
        en.expect_in_stdout(first["address"].as_str().unwrap());
    }
}

//! The report cover flags (`--center`, `--report-number`, `--tester`, `--reviewer`) shared by
//! `run` and `report`.

use adaptest_reports::Product;
use clap::Args;
use std::path::Path;

/// Report cover fields; each overrides the plan's `[product]` field of the same name.
#[derive(Debug, Clone, Default, Args)]
pub struct CoverArgs {
    /// The adaptation center issuing the report (cover).
    #[arg(long, value_name = "NAME")]
    pub center: Option<String>,
    /// The center's report number (cover).
    #[arg(long, value_name = "NUMBER")]
    pub report_number: Option<String>,
    /// Who ran the tests (cover).
    #[arg(long, value_name = "NAME")]
    pub tester: Option<String>,
    /// Who reviewed the report (cover).
    #[arg(long, value_name = "NAME")]
    pub reviewer: Option<String>,
}

impl CoverArgs {
    /// Set the fields given on the command line.
    pub fn apply(&self, product: &mut Product) {
        let set = |field: &mut String, value: &Option<String>| {
            if let Some(v) = value {
                *field = v.clone();
            }
        };
        set(&mut product.center, &self.center);
        set(&mut product.report_number, &self.report_number);
        set(&mut product.tester, &self.tester);
        set(&mut product.reviewer, &self.reviewer);
    }

    /// The cover of a run's results: a resumed run keeps what its earlier sessions were given
    /// (from its results.json), then the flags of this session apply.
    pub fn apply_to_run(&self, run_dir: &Path, resumed: bool, product: &mut Product) {
        if resumed
            && let Ok(text) = std::fs::read_to_string(run_dir.join("results.json"))
            && let Ok(previous) = adaptest_reports::from_json(&text)
        {
            let keep = |field: &mut String, earlier: String| {
                if !earlier.is_empty() {
                    *field = earlier;
                }
            };
            keep(&mut product.center, previous.product.center);
            keep(&mut product.report_number, previous.product.report_number);
            keep(&mut product.tester, previous.product.tester);
            keep(&mut product.reviewer, previous.product.reviewer);
        }
        self.apply(product);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_flags_override_only_what_is_given() {
        let mut p = Product {
            center: "Plan center".into(),
            tester: "Plan tester".into(),
            ..Product::default()
        };
        CoverArgs {
            report_number: Some("R-1".into()),
            tester: Some("Zhang San".into()),
            ..CoverArgs::default()
        }
        .apply(&mut p);
        assert_eq!(p.center, "Plan center");
        assert_eq!(p.report_number, "R-1");
        assert_eq!(p.tester, "Zhang San");
        assert_eq!(p.reviewer, "");
    }
}

//! `byok-server catalog check`: what is wrong with a catalog file, all of it
//! at once — unknown fields, rows without prices, routes that name models
//! the file does not price, and defaults past (or near) their retirement.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::PriceCatalog;

/// Days before a shutdown that a route to the model is warned about.
pub const RETIREMENT_WARNING_DAYS: i64 = 30;

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogReport {
    /// Errors: the file would be refused, or routes would fail.
    pub problems: Vec<String>,
    /// Worth acting on soon.
    pub warnings: Vec<String>,
}

impl CatalogReport {
    /// Whether the file is fit to use.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

const TOP: &[&str] = &["version", "peak", "models", "policy", "baseline"];
const MODEL: &[&str] = &[
    "provider",
    "model",
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "off_peak",
    "tiers",
    "shutdown_date",
    "context_window",
    "max_output",
    "capabilities",
    "tasks",
    "tier",
    "as_of",
    "source",
];
const MODEL_REQUIRED: &[&str] = &[
    "provider",
    "model",
    "input",
    "output",
    "context_window",
    "tasks",
    "tier",
    "as_of",
    "source",
];
const TIER: &[&str] = &[
    "above_input_tokens",
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
];
const OFF_PEAK: &[&str] = &["input", "cached_input", "output"];

fn unknown(report: &mut CatalogReport, at: &str, table: &toml::Table, known: &[&str]) {
    for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
        report.problems.push(format!("{at}: unknown field `{key}`"));
    }
}

/// Checks `text` as an override of the built-in catalog (as the server loads
/// it), on `today`.
#[must_use]
pub fn check(text: &str, today: NaiveDate) -> CatalogReport {
    let mut report = CatalogReport::default();
    let table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(error) => {
            report.problems.push(format!("not TOML: {error}"));
            return report;
        }
    };
    unknown(&mut report, "the file", &table, TOP);
    let mut priced = BTreeSet::new();
    let models = table.get("models").and_then(toml::Value::as_array);
    for (i, row) in models.into_iter().flatten().enumerate() {
        let Some(row) = row.as_table() else {
            report.problems.push(format!("models[{i}]: not a table"));
            continue;
        };
        let name = format!(
            "models[{i}] ({}:{})",
            row.get("provider")
                .and_then(toml::Value::as_str)
                .unwrap_or("?"),
            row.get("model")
                .and_then(toml::Value::as_str)
                .unwrap_or("?")
        );
        unknown(&mut report, &name, row, MODEL);
        for field in MODEL_REQUIRED.iter().filter(|f| !row.contains_key(**f)) {
            report.problems.push(format!("{name}: missing `{field}`"));
        }
        for (j, tier) in row
            .get("tiers")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(tier) = tier.as_table() {
                unknown(&mut report, &format!("{name} tiers[{j}]"), tier, TIER);
            }
        }
        if let Some(off) = row.get("off_peak").and_then(toml::Value::as_table) {
            unknown(&mut report, &format!("{name} off_peak"), off, OFF_PEAK);
        }
        if let (Some(p), Some(m)) = (
            row.get("provider").and_then(toml::Value::as_str),
            row.get("model").and_then(toml::Value::as_str),
        ) {
            priced.insert(format!("{p}:{m}"));
        }
    }
    let builtin = PriceCatalog::builtin();
    let merged = match builtin.clone().with_overrides(text) {
        Ok(merged) => Some(merged),
        Err(error) => {
            report.problems.push(format!("refused: {error}"));
            None
        }
    };
    let policy = table.get("policy").and_then(toml::Value::as_table);
    for (task, entry) in policy.into_iter().flatten() {
        let candidates = entry
            .get("candidates")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str);
        for candidate in candidates {
            if priced.contains(candidate) {
                continue;
            }
            let in_builtin = crate::ModelRef::parse(candidate)
                .ok()
                .is_some_and(|r| builtin.get(r.provider, &r.model).is_some());
            if in_builtin {
                report.warnings.push(format!(
                    "policy.{task}: {candidate} is not in this file (the built-in catalog prices it)"
                ));
            } else {
                report.problems.push(format!(
                    "policy.{task}: {candidate} names a model no catalog prices"
                ));
            }
        }
    }
    if let Some(catalog) = merged {
        retirements(&catalog, today, &mut report);
    }
    report
}

/// Routes to models past or near their shutdown date.
fn retirements(catalog: &PriceCatalog, today: NaiveDate, report: &mut CatalogReport) {
    for task in catalog.tasks() {
        for candidate in catalog.candidates(task) {
            let Some(date) = catalog
                .get(candidate.provider, &candidate.model)
                .and_then(|m| m.shutdown_date)
            else {
                continue;
            };
            let days = (date - today).num_days();
            if days <= 0 {
                report.problems.push(format!(
                    "policy.{task}: {candidate} was retired on {date}; it is never routed to"
                ));
            } else if days <= RETIREMENT_WARNING_DAYS {
                report.warnings.push(format!(
                    "policy.{task}: {candidate} is retired on {date}, in {days} days"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_builtin_catalog_passes_today() {
        let report = check(crate::BUILTIN_CATALOG, day("2026-11-30"));
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn every_kind_of_fault_is_reported_at_once() {
        let file = r#"
            colour = "blue"
            [[models]]
            provider = "openai"
            model = "gpt-x"
            input = "1.00"
            context_window = 1000
            tasks = ["general"]
            tier = 1
            as_of = "2026-11-30"
            source = "test"
            sparkle = true
            [[models]]
            provider = "openai"
            model = "gpt-y"
            input = "1.00"
            output = "2.00"
            context_window = 1000
            tasks = ["general"]
            tier = 1
            as_of = "2026-11-30"
            source = "test"
            shutdown_date = "2026-12-10"
            [policy.general]
            candidates = ["openai:gpt-y", "openai:gpt-4o-mini", "openai:gpt-zzz"]
        "#;
        let report = check(file, day("2026-11-30"));
        let all = format!("{report:?}");
        for expected in [
            "unknown field `colour`",
            "unknown field `sparkle`",
            "(openai:gpt-x): missing `output`",
            "gpt-zzz names a model no catalog prices",
        ] {
            assert!(
                report.problems.iter().any(|p| p.contains(expected)),
                "{expected}: {all}"
            );
        }
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("gpt-4o-mini is not in this file")),
            "{all}"
        );
        // A file without those faults, naming a model retiring in 10 days.
        let good = file
            .replace("colour = \"blue\"", "")
            .replace("sparkle = true", "output = \"2.00\"")
            .replace(", \"openai:gpt-zzz\"", "");
        let report = check(&good, day("2026-11-30"));
        assert!(report.is_ok(), "{report:?}");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("gpt-y is retired on 2026-12-10, in 10 days")),
            "{report:?}"
        );
        let later = check(&good, day("2026-12-10"));
        assert!(
            later
                .problems
                .iter()
                .any(|p| p.contains("gpt-y was retired on 2026-12-10")),
            "{later:?}"
        );
    }
}

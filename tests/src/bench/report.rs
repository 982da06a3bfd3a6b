//! The report: `report.md` (where and how it was measured, then a table per
//! section), `report.png` (the charts), and the figures on stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::machine::{self, Machine};
use crate::bench::{chart, Figure, Options, Section};

pub const MARKDOWN: &str = "report.md";
pub const CHART: &str = "report.png";

/// A finished run.
pub struct Report<'a> {
    pub machine: Machine,
    pub options: &'a Options,
    pub sections: &'a [Section],
    pub took: Duration,
    /// The load average when the run ended.
    pub load_at_end: String,
}

impl Report<'_> {
    /// Writes report.md and report.png into the output directory; returns
    /// their paths.
    pub fn write(&self) -> Result<(PathBuf, PathBuf)> {
        let dir = &self.options.out;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let png = dir.join(CHART);
        let charts: Vec<&chart::Chart> = self.sections.iter().flat_map(|s| &s.charts).collect();
        chart::render(&png, &charts)?;
        let md = dir.join(MARKDOWN);
        std::fs::write(&md, self.markdown()).with_context(|| format!("write {}", md.display()))?;
        Ok((md, png))
    }

    /// (targets met, targets set, the figures that missed theirs).
    pub fn verdict(&self) -> (usize, usize, Vec<&Figure>) {
        let with_target: Vec<&Figure> = self
            .sections
            .iter()
            .flat_map(|s| &s.figures)
            .filter(|f| f.target.is_some())
            .collect();
        let missed: Vec<&Figure> = with_target
            .iter()
            .copied()
            .filter(|f| f.met() == Some(false))
            .collect();
        (with_target.len() - missed.len(), with_target.len(), missed)
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut md = String::new();
        let _ = writeln!(md, "# havip benchmark report\n");
        let _ = writeln!(
            md,
            "Measured on {} with `{}`.\n",
            m.date, self.options.command
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(
            md,
            "| machine | {}, {} CPUs{} |",
            m.cpu_model,
            m.cpus,
            if m.virtual_machine {
                " (a virtual machine)"
            } else {
                ""
            }
        );
        let _ = writeln!(md, "| kernel | {} |", m.kernel);
        let _ = writeln!(md, "| OS | {} |", m.os);
        let _ = writeln!(md, "| commit | {} |", commit());
        let _ = writeln!(
            md,
            "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
            m.load, self.load_at_end
        );
        let _ = writeln!(md, "| took | {} |\n", minutes(self.took));

        let (met, set, missed) = self.verdict();
        let _ = write!(md, "**Targets met: {met} of {set}.**");
        if !missed.is_empty() {
            let names: Vec<&str> = missed.iter().map(|f| f.name.as_str()).collect();
            let _ = write!(md, " Not met: {}.", names.join("; "));
        }
        let _ = writeln!(md, "\n");
        let _ = writeln!(
            md,
            "This machine is shared and noisy: every comparison was measured side by side \
             in the same run, interleaved in rounds, and the figures are differences and \
             ratios; absolute times are given for scale only.\n"
        );

        for (i, section) in self.sections.iter().enumerate() {
            let _ = writeln!(md, "## {}. {}\n", i + 1, section.title);
            for paragraph in &section.method {
                let _ = writeln!(md, "{paragraph}\n");
            }
            md.push_str(&table(&section.figures));
            md.push('\n');
        }
        let _ = writeln!(md, "![the figures as charts]({CHART})");
        md
    }

    /// The figures as the terminal shows them.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let width = self
            .sections
            .iter()
            .flat_map(|s| &s.figures)
            .map(|f| f.name.chars().count())
            .max()
            .unwrap_or(0);
        for section in self.sections {
            let _ = writeln!(out, "\n{}", section.title);
            for f in &section.figures {
                let target = f
                    .target
                    .map(|t| format!("  target {}: {}", t.format(f.unit), verdict(f)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {:<width$} {:>12}  ({} .. {}){target}",
                    f.name,
                    f.unit.format(f.value),
                    f.unit.format(f.spread.0),
                    f.unit.format(f.spread.1),
                );
            }
        }
        let (met, set, _) = self.verdict();
        let _ = writeln!(out, "\ntargets met: {met} of {set}");
        out
    }
}

/// The figures of a section as a markdown table.
fn table(figures: &[Figure]) -> String {
    let mut md = String::from(
        "| figure | value | spread (min – max) | n | target | result |\n\
         |---|---:|---|---:|---|---|\n",
    );
    for f in figures {
        let _ = writeln!(
            md,
            "| {} | {} | {} – {} | {} | {} | {} |",
            f.name,
            f.unit.format(f.value),
            f.unit.format(f.spread.0),
            f.unit.format(f.spread.1),
            f.samples,
            f.target
                .map(|t| t.format(f.unit))
                .unwrap_or_else(|| "—".into()),
            verdict(f)
        );
    }
    md.push_str(
        "\nvalue: the median over the rounds, or the percentile the figure names; \
         n: rounds (or switches).\n",
    );
    md
}

fn verdict(f: &Figure) -> &'static str {
    match f.met() {
        Some(true) => "pass",
        Some(false) => "**FAIL**",
        None => "—",
    }
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// The workspace's commit, and whether the tree had changes.
fn commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{head} (with local changes)"),
            _ => head,
        },
        None => "unknown (not a git checkout)".into(),
    }
}

/// The load average now, for the end of the run.
pub fn load_now() -> String {
    machine::load_average()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Target, Unit};

    #[test]
    fn a_table_row_says_value_spread_target_and_result() {
        let f = Figure::median("VIP delivery", Unit::Nanoseconds, &[70.0, 65.0, 90.0])
            .with_target(Target::AtMost(60.0));
        let md = table(&[f]);
        assert!(
            md.contains(
                "| VIP delivery | 70.0 ns | 65.0 ns – 90.0 ns | 3 | ≤ 60.0 ns | **FAIL** |"
            ),
            "{md}"
        );
        let f = Figure::median("ratio", Unit::Ratio, &[2.5]).with_target(Target::AtLeast(2.0));
        assert!(table(&[f]).contains("| 2.50x | 2.50x – 2.50x | 1 | ≥ 2.00x | pass |"));
    }
}

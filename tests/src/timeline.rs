//! The failover timeline as the client saw it, in ms from the kill.

use std::fmt;

/// One line of the timeline.
#[derive(Clone, Debug)]
pub struct Mark {
    /// µs since the Unix epoch, if it happened.
    pub at_us: Option<i64>,
    pub what: String,
}

/// Events around a failover, relative to `t0_us` (the kill).
#[derive(Clone, Debug)]
pub struct Timeline {
    pub title: String,
    pub t0_us: i64,
    pub marks: Vec<Mark>,
    /// Free-form lines printed after the marks (gap, loss).
    pub notes: Vec<String>,
}

impl Timeline {
    pub fn new(title: impl Into<String>, t0_us: i64) -> Self {
        Self {
            title: title.into(),
            t0_us,
            marks: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn mark(&mut self, at_us: Option<i64>, what: impl Into<String>) -> &mut Self {
        self.marks.push(Mark {
            at_us,
            what: what.into(),
        });
        self
    }

    pub fn note(&mut self, line: impl Into<String>) -> &mut Self {
        self.notes.push(line.into());
        self
    }

    /// ms from the kill to `at_us`.
    pub fn offset_ms(&self, at_us: i64) -> f64 {
        (at_us - self.t0_us) as f64 / 1000.0
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (ms from the kill)", self.title)?;
        let mut marks = self.marks.clone();
        // Events that happened in time order; the missing ones at the end.
        marks.sort_by_key(|m| m.at_us.unwrap_or(i64::MAX));
        for m in &marks {
            match m.at_us {
                Some(t) => writeln!(f, "  {:>+10.1}  {}", self.offset_ms(t), m.what)?,
                None => writeln!(f, "  {:>10}  {}", "never", m.what)?,
            }
        }
        for n in &self.notes {
            writeln!(f, "  {n}")?;
        }
        Ok(())
    }
}
